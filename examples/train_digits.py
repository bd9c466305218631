"""Train an MLP on the UCI handwritten digits with graphc, end to end.

    build in Python → save model.pb → load → compile (gradients + SGD updates appended,
    memory planned) → run training steps in the C++ runtime → evaluate on the test set

Run:  python examples/train_digits.py [--epochs 30] [--out DIR]
      mpirun -np 2 python examples/train_digits.py --data-parallel --threads 1
          # 2 replicas of batch --batch each (docs/data_parallel.md: the flags mpirun needs as root)
"""

import argparse
import os
import sys
import time

import numpy as np

import graphc as gc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dp_common  # noqa: E402

try:
    from tqdm import tqdm
except ImportError:  # tqdm is a dependency; keep the example runnable without it
    tqdm = None


def build_model(hidden=128, seed=0):
    """A 64-128-10 MLP with softmax cross-entropy, trained by SGD with momentum."""
    g = gc.Graph()
    with g:
        x = gc.placeholder("x", (None, 64))
        y = gc.placeholder("y", (None,), dtype="int64")
        with gc.name_scope("fc1"):
            w1 = gc.variable("w", (64, hidden), init=gc.init.kaiming_uniform(seed=seed))
            b1 = gc.variable("b", (hidden,))
            h = gc.relu(x @ w1 + b1)
        with gc.name_scope("fc2"):
            w2 = gc.variable("w", (hidden, 10), init=gc.init.xavier_uniform(seed=seed + 1))
            b2 = gc.variable("b", (10,))
            logits = gc.add(h @ w2, b2, name="logits")
        loss = gc.softmax_cross_entropy(logits, y, name="loss")
        gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    return g, logits, loss


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64, help="batch of one step (of each rank with --data-parallel)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="folder for model.pb, train.plan, infer.plan, checkpoint.npz")
    dp_common.add_argument(parser)
    args = parser.parse_args(argv)
    world = dp_common.World(args.data_parallel)

    (xtr, ytr), (xte, yte) = gc.datasets.load_digits()
    global_batch = args.batch * world.size
    n_batches = len(xtr) // global_batch
    if n_batches < 1:
        parser.error(f"--batch {args.batch} x {world.size} ranks exceeds the {len(xtr)} training images")
    out_dir = world.output_dir(args.out, "graphc-digits-")

    graph, logits, loss = build_model()
    model_path = os.path.join(out_dir, "model.pb")
    if world.root:
        graph.save(model_path)
    world.barrier()
    model = gc.load(model_path)  # what a deployment would do: start from the file

    # --data-parallel: allreduce steps sum the gradients of the ranks, the update divides by N.
    dp = {"data_parallel": True} if args.data_parallel else {}
    train_plan = gc.compile(model, shapes={"x": (args.batch, 64), "y": (args.batch,)}, **dp)
    if world.root:
        train_plan.save(os.path.join(out_dir, "train.plan"))
    report = train_plan.memory_report()
    world.print(f"training step: {len(train_plan.steps)} steps, arena {report['arena_bytes']:,} B "
                f"(naive {report['naive_bytes']:,} B, lower bound {report['lower_bound_bytes']:,} B)")
    if args.data_parallel:
        world.print(world.describe(train_plan, args.batch))

    sess = gc.Session(train_plan, threads=args.threads)   # data-parallel: joins the ranks, rank 0's weights
    # Every rank draws the same permutation; a step's global batch is --batch rows per rank and
    # rank r trains on the r-th --batch rows of it (in one process: the whole batch).
    rng = np.random.default_rng(0)
    steps = range(args.epochs * n_batches)
    bar = tqdm(steps, desc="training", unit="step", file=sys.stdout) if tqdm and world.root else steps
    t0 = time.perf_counter()
    order = None
    losses = np.empty(len(steps), np.float64)
    for step in bar:
        if step % n_batches == 0:
            order = rng.permutation(len(xtr))
        first = (step % n_batches) * global_batch + world.rank * args.batch
        idx = order[first:first + args.batch]
        losses[step] = value = float(sess.run({"x": xtr[idx], "y": ytr[idx]})[loss.name])
        if bar is not steps and step % 50 == 0:
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
    train_time = time.perf_counter() - t0
    sess.save_checkpoint(os.path.join(out_dir, "checkpoint.npz"))   # data-parallel: rank 0 writes, all wait
    # Each rank's loss is over its shard; the mean over the ranks is the global batch's loss.
    losses = world.mean(losses)
    value = float(losses[-1]) if len(losses) else float("nan")
    accuracy = evaluate(model, sess, logits, xte, yte, args, out_dir, len(steps), train_time, value) \
        if world.root else None
    return world.broadcast(accuracy)       # every rank exits with rank 0's verdict


def evaluate(model, sess, logits, xte, yte, args, out_dir, n_steps, train_time, value):
    """Test accuracy of the trained weights (rank 0 only: every rank holds the same ones), with
    the inference plan checked against the numpy reference interpreter; 0.0 when they disagree."""
    # Inference: compile the forward graph for the whole test set and copy the weights.
    infer_plan = gc.compile(model, shapes={"x": (len(xte), 64)}, fetches=[logits.name], train=False)
    infer_plan.save(os.path.join(out_dir, "infer.plan"))
    infer = gc.Session(infer_plan, threads=args.threads)
    for name in infer.variable_names:
        infer.set_variable(name, sess.get_variable(name))
    test_logits = infer.run({"x": xte})[logits.name]
    # The C++ runtime against the numpy reference interpreter, with the trained weights.
    weights = {name: infer.get_variable(name) for name in infer.variable_names}
    expected = gc.reference.evaluate(model, {"x": xte}, [logits.name], state=weights)[logits.name]
    max_diff = float(np.max(np.abs(test_logits - expected)))
    if not np.allclose(test_logits, expected, rtol=1e-4, atol=1e-4):
        print(f"runtime and reference interpreter disagree: max |diff| = {max_diff:.3g}", flush=True)
        return 0.0
    predictions = np.argmax(test_logits, axis=1)
    accuracy = float(np.mean(predictions == yte))
    print(f"trained {n_steps} steps in {train_time:.2f} s; final loss {value:.4f}")
    print(f"inference plan matches the reference interpreter (max |diff| {max_diff:.2e})")
    print(f"test accuracy: {accuracy:.4f} ({len(xte)} images)")
    print(f"files: {out_dir} (model.pb, train.plan, infer.plan, checkpoint.npz)", flush=True)
    return accuracy


if __name__ == "__main__":
    acc = main()
    sys.exit(0 if acc >= 0.96 else 1)
