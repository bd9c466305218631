"""Memory planner benchmark: arena vs lower bound and naive for an MLP training step, and
activation memory with and without a √N recompute budget for a 100-layer MLP.

    PYTHONPATH=. python tools/bench_memory.py [--depth 100]

The training step is forward + gc.gradients + a stand-in update that consumes every
weight gradient (sum of squares, role "optimizer"), since in-place optimizer ops may not
be registered yet.  Activation memory = the most bytes of kind "activation" live at one
step of the plan (replayed by the verifier's liveness).
"""

import argparse
import time

import graphc as gc
from graphc._proto import graphc_pb2 as pb
from graphc.compiler import lower_graph
from graphc.compiler.assign_buffers import assign_buffers
from graphc.compiler.emit_plan import emit_plan
from graphc.compiler.recompute import measure, recompute_for_budget
from graphc.compiler.schedule_nodes import schedule_nodes
from graphc.compiler.verify_plan import verify_plan
from graphc.plan import Plan, memory_report


def mlp(dims, batch):
    with gc.Graph() as g:
        x = gc.placeholder("x", (batch, dims[0]))
        y = gc.placeholder("y", (batch,), dtype="int64")
        h, params = x, []
        for k in range(len(dims) - 1):
            w = gc.variable(f"w{k}", (dims[k], dims[k + 1]), init=gc.init.xavier_uniform(seed=k))
            b = gc.variable(f"b{k}", (dims[k + 1],))
            params += [w, b]
            h = h @ w + b
            if k < len(dims) - 2:
                h = gc.relu(h)
        loss = gc.softmax_cross_entropy(h, y)
        grads = gc.gradients(loss, params)
        with g.building("optimizer"):
            total = gc.sum(grads[0] * grads[0])
            for d in grads[1:]:
                total = total + gc.sum(d * d)
    g.set_outputs([loss, total])
    return g


def activation_peak(plan):
    live = verify_plan(plan)
    per_step = {}
    for i, (a, b) in live.items():
        v = plan.proto.values[i]
        if v.kind == "activation" and v.storage == pb.ARENA:
            for s in range(a, b + 1):
                per_step[s] = per_step.get(s, 0) + v.nbytes
    return max(per_step.values(), default=0)


def plan_of(graph):
    sched = schedule_nodes(graph)
    return Plan(emit_plan(sched, assign_buffers(sched)))


def mib(n):
    return f"{n / 2**20:9.2f} MiB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=100)
    args = ap.parse_args()

    print("MLP 784-1024-1024-10, batch 128, training step")
    t = time.perf_counter()
    plan = gc.compile(mlp([784, 1024, 1024, 10], 128))
    r = memory_report(plan)
    print(f"  arena {mib(r['arena_bytes'])}  lower bound {mib(r['lower_bound_bytes'])}  naive {mib(r['naive_bytes'])}")
    print(f"  arena/lower bound {r['arena_bytes'] / r['lower_bound_bytes']:.3f}   arena/naive "
          f"{r['arena_bytes'] / r['naive_bytes']:.3f}   compile {time.perf_counter() - t:.2f}s")

    depth = args.depth
    print(f"\nMLP {depth} layers of width 1024, batch 128, training step")
    base = lower_graph(mlp([1024] * (depth + 1) + [10], 128))
    t = time.perf_counter()
    plain = plan_of(base)
    t_plain = time.perf_counter() - t
    arena, _ = measure(base)
    rows = [("no budget", plain, t_plain, "-")]
    n = sum(1 for node in base.nodes if node.role == "forward")
    for label, budget in (("budget arena/2", arena // 2), ("budget arena/4", arena // 4)):
        t = time.perf_counter()
        try:
            g2 = recompute_for_budget(base, budget)
        except gc.errors.CompileError as e:
            print(f"  {label}: {e}")
            continue
        rows.append((label, plan_of(g2), time.perf_counter() - t, g2.metadata.get("graphc.recompute", "-")))
    a0 = activation_peak(plain)
    print(f"  forward nodes: {n}")
    print(f"  {'plan':16} {'arena':>13} {'activation peak':>16} {'cut':>6} {'recomputed steps':>17} {'strategy':>18}"
          f" {'compile':>8}")
    for label, p, secs, strategy in rows:
        act = activation_peak(p)
        nrec = sum(1 for s in p.steps if s.role == pb.RECOMPUTE)
        print(f"  {label:16} {mib(p.arena_bytes):>13} {mib(act):>16} {a0 / act:5.1f}x {nrec:>17} {strategy:>18}"
              f" {secs:7.1f}s")
    print("\n  step time: not measured here (run the plans with gc.Session for timings).")


if __name__ == "__main__":
    main()
