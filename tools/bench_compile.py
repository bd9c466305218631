"""Compile-time benchmark (issue 9): how gc.compile scales with the number of nodes.

Builds chain graphs of N nodes (x @ w, then relu / add a bias variable / mul by the
input, alternating, then a mean as the training loss, SGD momentum 0.9) and times, per
size: building the graph, gc.save and gc.load of the .pb, every graph pass of
gc.compile (through its ``on_pass`` callback; "lower" is assign_buffers + emit_plan,
the part after the last pass) for the inference plan (``train=False``) and for the
training plan, and verify_plan (what GRAPHC_VERIFY=1 adds to every compile).  Each
stage is the minimum over ``--repeat`` runs (the machine may be shared).  The last
columns are growth ratios between consecutive sizes: time ratio over size ratio, so
1.0 is linear and the size ratio itself (e.g. 2.5) is quadratic.

Target: the whole gc.compile (inference and training plans) of a 50,000-node chain
in under 5 s.

Run:  PYTHONPATH=. python tools/bench_compile.py [--sizes 5000,10000,20000,50000] [--repeat 3]
      [--save-plans DIR]   (writes each plan's deterministic bytes, to compare builds)
      [--profile N]        (cProfile one compile of the N-node chain, training plan, top 30)
      [--no-verify]        (skip the verify_plan rows: graphc.plan's layout check, which they
                            include, grows faster than the compiler)
"""
import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

WIDTH = 8
BATCH = 4


def chain_graph(gc, n):
    """A chain of ``n`` nodes (counting constants) with a scalar loss and an SGD spec."""
    with gc.Graph() as g:
        x = gc.placeholder("x", ("batch", WIDTH))
        w = gc.variable("w", (WIDTH, WIDTH), init=gc.init.xavier_uniform(seed=0))
        b = gc.variable("b", (WIDTH,))
        h = x @ w
        k = 0
        while len(g.nodes) < n - 1:
            kind = k % 3
            h = gc.relu(h) if kind == 0 else (h + b if kind == 1 else h * x)
            k += 1
        loss = gc.mean(h, name="loss")
        gc.optim.SGD(lr=0.01, momentum=0.9).minimize(loss)
    return g


def compile_timed(gc, model, train, clock):
    """(plan, [(stage, seconds)]) for one gc.compile, one row per graph pass plus "lower"."""
    stamps = []
    t0 = clock()
    plan = gc.compile(model, shapes={"x": (BATCH, WIDTH)}, train=train,
                      on_pass=lambda name, _: stamps.append((name, clock())))
    t_end = clock()
    rows, prev = [], t0
    for name, t in stamps:
        rows.append((name, t - prev))
        prev = t
    rows.append(("lower", t_end - prev))
    rows.append(("total", t_end - t0))
    return plan, rows


def run_once(gc, n, tmp, clock, verify=True):
    """{stage: seconds} for one size, and the two plans."""
    times = {}
    t0 = clock()
    g = chain_graph(gc, n)
    times["build graph"] = clock() - t0
    path = os.path.join(tmp, f"chain{n}.pb")
    t0 = clock()
    gc.save(g, path) if hasattr(gc, "save") else g.save(path)
    times["save .pb"] = clock() - t0
    t0 = clock()
    model = gc.load(path)
    times["load .pb"] = clock() - t0
    plans = {}
    for kind, train in (("infer", False), ("train", None)):
        plan, rows = compile_timed(gc, model, train, clock)
        plans[kind] = plan
        for name, sec in rows:
            times[f"{kind}: {name}"] = sec
        if verify:
            t0 = clock()
            gc.verify(plan)
            times[f"{kind}: verify_plan"] = clock() - t0
    times["compile infer+train"] = times["infer: total"] + times["train: total"]
    return times, plans, len(g.nodes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,10000,20000,50000", help="comma-separated node counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the minimum is reported")
    parser.add_argument("--save-plans", metavar="DIR", help="write chain<N>.<infer|train>.plan bytes here")
    parser.add_argument("--profile", type=int, metavar="N", help="cProfile the training compile of N nodes")
    parser.add_argument("--no-verify", action="store_true", help="skip timing verify_plan")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu: this process's CPU time (steadier on a shared machine); wall: elapsed time")
    args = parser.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        parser.error(f"--sizes takes comma-separated ints, got {args.sizes!r}")
    if not sizes or min(sizes) < 4 or args.repeat < 1:
        parser.error("--sizes needs ints >= 4 and --repeat >= 1")

    bu.pin_threads(1)  # numpy's BLAS single-threaded, so CPU time is the compiler's own work
    import graphc as gc

    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    if args.profile:
        model = chain_graph(gc, args.profile)
        prof = cProfile.Profile()
        prof.enable()
        gc.compile(model, shapes={"x": (BATCH, WIDTH)})
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
        return

    print(f"# graphc compile-time scaling: chain graphs, x ({BATCH}, {WIDTH}), {args.clock} seconds, "
          f"min of {args.repeat} run(s)")
    print(f"# {bu.machine()}")
    print(f"# {bu.load_note()}")
    best, counts = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            for _ in range(args.repeat):
                times, plans, counts[n] = run_once(gc, n, tmp, clock, verify=not args.no_verify)
                for stage, sec in times.items():
                    best.setdefault(n, {})[stage] = min(sec, best.get(n, {}).get(stage, float("inf")))
            if args.save_plans:
                os.makedirs(args.save_plans, exist_ok=True)
                for kind, plan in plans.items():
                    with open(os.path.join(args.save_plans, f"chain{n}.{kind}.plan"), "wb") as f:
                        f.write(plan.proto.SerializeToString(deterministic=True))
            print(f"# {n} nodes done ({best[n]['compile infer+train']:.2f} s compile)", flush=True)

    stages = list(best[sizes[0]])
    pairs = list(zip(sizes, sizes[1:]))
    head = ["stage (seconds)"] + [f"{n} nodes" for n in sizes] + [f"x{b / a:g} size" for a, b in pairs]
    rows = []
    for stage in stages:
        row = [stage] + [f"{best[n][stage]:.3f}" for n in sizes]
        for a, b in pairs:
            ta, tb = best[a][stage], best[b][stage]
            row.append(f"{tb / ta / (b / a):.2f}" if ta > 1e-3 else "-")
        rows.append(row)
    widths = [max(len(r[c]) for r in [head] + rows) for c in range(len(head))]
    fmt = "| " + " | ".join("{:<%d}" % w if c == 0 else "{:>%d}" % w for c, w in enumerate(widths)) + " |"
    print(fmt.format(*head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(fmt.format(*r))
    print("# growth columns: (time ratio) / (size ratio) between consecutive sizes; 1.00 = linear")
    print("# node counts: " + ", ".join(f"{n}: {counts[n]} forward nodes" for n in sizes))


if __name__ == "__main__":
    main()
