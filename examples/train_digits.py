"""Train an MLP on the UCI handwritten digits with graphc, end to end.

    build in Python → save model.pb → load → compile (gradients + SGD updates appended,
    memory planned) → run training steps in the C++ runtime → evaluate on the test set

Run:  python examples/train_digits.py [--epochs 30] [--out DIR]
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

import graphc as gc

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
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="folder for model.pb, train.plan, infer.plan")
    args = parser.parse_args(argv)

    (xtr, ytr), (xte, yte) = gc.datasets.load_digits()
    out_dir = args.out or tempfile.mkdtemp(prefix="graphc-digits-")
    os.makedirs(out_dir, exist_ok=True)

    graph, logits, loss = build_model()
    model_path = os.path.join(out_dir, "model.pb")
    graph.save(model_path)
    model = gc.load(model_path)  # what a deployment would do: start from the file

    train_plan = gc.compile(model, shapes={"x": (args.batch, 64), "y": (args.batch,)})
    train_plan.save(os.path.join(out_dir, "train.plan"))
    report = train_plan.memory_report()
    print(f"training step: {len(train_plan.steps)} steps, arena {report['arena_bytes']:,} B "
          f"(naive {report['naive_bytes']:,} B, lower bound {report['lower_bound_bytes']:,} B)")

    sess = gc.Session(train_plan, threads=args.threads)
    rng = np.random.default_rng(0)
    n_batches = len(xtr) // args.batch
    steps = range(args.epochs * n_batches)
    bar = tqdm(steps, desc="training", unit="step", file=sys.stdout) if tqdm else steps
    t0 = time.perf_counter()
    order = None
    for step in bar:
        if step % n_batches == 0:
            order = rng.permutation(len(xtr))
        idx = order[(step % n_batches) * args.batch:(step % n_batches + 1) * args.batch]
        value = float(sess.run({"x": xtr[idx], "y": ytr[idx]})[loss.name])
        if tqdm and step % 50 == 0:
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
    train_time = time.perf_counter() - t0

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
        raise SystemExit(f"runtime and reference interpreter disagree: max |diff| = {max_diff:.3g}")
    predictions = np.argmax(test_logits, axis=1)
    accuracy = float(np.mean(predictions == yte))
    print(f"trained {len(steps)} steps in {train_time:.2f} s; final loss {value:.4f}")
    print(f"inference plan matches the reference interpreter (max |diff| {max_diff:.2e})")
    print(f"test accuracy: {accuracy:.4f} ({len(xte)} images)")
    print(f"files: {out_dir}")
    return accuracy


if __name__ == "__main__":
    acc = main()
    sys.exit(0 if acc >= 0.96 else 1)
