"""attention benchmark: gc.scaled_dot_product_attention's forward against PyTorch CPU
(torch.nn.functional.scaled_dot_product_attention), float32, batch 8, 4 heads, head dim 32, at
sequence 256 and 1024, without and with causal masking, same thread count: time and memory.

Time: graphc runs a one-node plan through an IOBinding (inputs read in place, outputs written
in place: the kernel, not feed copies); results are checked against torch (1e-4) first.  Medians
of alternating blocks (tools/_bench_util.py); ratio = graphc / torch (< 1: graphc faster).

Memory: the peak RSS growth of a fresh child process per case (Linux: the peak, VmHWM, reset
through /proc/self/clear_refs, minus VmRSS at that moment), from just before the session
(graphc: compile, plan load, arena, kernels) or the first torch call to after three forward
calls, the inputs already allocated; it includes the output (4 MiB at 1024).  One (L, S) float32
score matrix per batch·head would be 8 MiB at 256 and 128 MiB at 1024.  graphc's planned arena
(inputs, output, logsumexp and the kernel's workspace; untouched pages cost no RSS) is shown too.

Run:  PYTHONPATH=. python tools/bench_attention.py [--threads 2] [--repeat R] [--quick]
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

BATCH, HEADS, HEAD_DIM = 8, 4, 32
SEQS = [256, 1024]


def _inputs(np, n):
    rng = np.random.default_rng(0)
    return [rng.standard_normal((BATCH, HEADS, n, HEAD_DIM)).astype(np.float32) for _ in range(3)]


def graphc_case(gc, threads, n, causal, arrays):
    """(run(), output array, arena bytes): a one-node plan with in-place bindings."""
    with gc.Graph() as g:
        ph = [gc.placeholder(c, a.shape) for c, a in zip("qkv", arrays)]
        out = gc.scaled_dot_product_attention(*ph, causal=causal)
    plan = gc.compile(g, shapes={}, fetches=[out.name])
    binding = gc.Session(plan, threads=threads).io_binding()
    for c, a in zip("qkv", arrays):
        binding.bind_input(c, a)
    return binding.run, binding.bind_output(out.name), plan.arena_bytes


def torch_case(torch, causal, arrays):
    q, k, v = (torch.from_numpy(a) for a in arrays)
    return lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/self/status")


def _reset_peak():
    """Start a new peak-RSS window (VmHWM := VmRSS); returns VmRSS in KiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS")


def _child(framework, n, causal, threads):
    """Peak RSS growth (MiB) of three forward calls in this (fresh) process; prints JSON."""
    bu.pin_threads(threads)
    import numpy as np
    arrays = _inputs(np, n)
    if framework == "graphc":
        import graphc as gc
        before = _reset_peak()
        run, _, _ = graphc_case(gc, threads, n, causal, arrays)
    else:
        import torch
        torch.set_num_threads(threads)
        before = _reset_peak()
        run = torch_case(torch, causal, arrays)
    for _ in range(3):
        run()
    print(json.dumps({"mib": (_status_kib("VmHWM") - before) / 1024.0}))


def peak_mib(framework, n, causal, threads):
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(here), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", framework, str(n), str(int(causal)),
                          str(threads)], capture_output=True, text=True, env=env, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"memory child {framework} {n} failed: {res.stderr.strip()[-400:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])["mib"]


def measure(threads, repeat, quick):
    """Rows of the combined table (tools/bench_seq.py): what, graphc_ms, torch_ms, ratio,
    graphc_mib, torch_mib (peak RSS growth) and graphc_arena_mib.  quick: causal at 256 and
    1024 only (the GPT case), no memory children."""
    bu.pin_threads(threads)
    import numpy as np

    import graphc as gc
    torch, _ = bu.try_import("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    rows = []
    cases = [(n, c) for n in SEQS for c in ((True,) if quick else (False, True))]
    for n, causal in cases:
        arrays = _inputs(np, n)
        run, out, arena = graphc_case(gc, threads, n, causal, arrays)
        fns = [run]
        if torch is not None:
            tfn = torch_case(torch, causal, arrays)
            run()
            err = float(np.abs(out - tfn().numpy()).max())
            if err > 1e-4:
                raise SystemExit(f"attention {n} causal={causal}: graphc and torch differ (max error {err:.2e})")
            fns.append(tfn)
        times = bu.median_times(fns, repeat)
        ours, theirs = times[0], (times[1] if torch is not None else None)
        row = {"what": f"attention fwd b{BATCH} h{HEADS} L=S={n} d{HEAD_DIM}{' causal' if causal else ''}",
               "graphc_ms": ours * 1e3, "torch_ms": theirs * 1e3 if theirs else None,
               "ratio": ours / theirs if theirs else None, "graphc_arena_mib": arena / 2**20}
        if not quick:
            row["graphc_mib"] = peak_mib("graphc", n, causal, threads)
            row["torch_mib"] = peak_mib("torch", n, causal, threads) if torch is not None else None
        rows.append(row)
    return rows


def main(argv=None):
    args = bu.parse_args(__doc__.splitlines()[0], argv=argv)
    bu.pin_threads(args.threads)
    from graphc import _runtime
    torch, why = bu.try_import("torch")
    repeat = args.repeat or (5 if args.quick else 15)
    print(bu.machine())
    print(bu.load_note())
    print(f"threads {args.threads}; ISA {_runtime.cpu_isa()}; torch {torch.__version__ if torch else why}; "
          f"{bu.SAMPLING}; median of {repeat}")
    rows = measure(args.threads, repeat, args.quick)

    def mib(x):
        return "-" if x is None else f"{x:.1f}"

    table = [[r["what"], bu.fmt_ms(r["graphc_ms"] / 1e3), bu.fmt_ms(r["torch_ms"] / 1e3 if r["torch_ms"] else None),
              "-" if r["ratio"] is None else f"{r['ratio']:.2f}x", mib(r.get("graphc_mib")), mib(r.get("torch_mib")),
              mib(r["graphc_arena_mib"])] for r in rows]
    bu.print_table("scaled_dot_product_attention forward, float32",
                   ["case", "graphc", "torch", "graphc/torch", "graphc peak MiB", "torch peak MiB",
                    "graphc arena MiB"], table)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]), bool(int(sys.argv[4])), int(sys.argv[5]))
    else:
        main()
