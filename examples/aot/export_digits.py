"""Export the digits MLP as a C library (an AOT artifact) plus the digits data as raw files.

    build the 64-128-10 MLP of examples/train_digits.py with three entries
      train     one SGD-with-momentum step on a batch of `--batch` images (fetches the loss)
      evaluate  the logits of the whole test set in one call
      predict   the logits of one image (batch 1: the latency a controller sees)
    → gc.compile(model, entries=[...]) → gc.emit_c(program, OUT, name="digits")
    → OUT/digits.h, digits.cc, digits.weights, Makefile, CMakeLists.txt, graphc/ (sources)
    + the data files below; then in OUT: `make programs PROGRAMS="train_digits.c infer_digits.c"`
      (the two C programs of this folder are copied there).

Data files (raw, little-endian, no header; the row count is the file size over the row size):
    digits_train_images.f32   float32 [n_train][64], pixels scaled to [0, 1] (row-major)
    digits_train_labels.i32   int32   [n_train], the class 0..9 of each row
    digits_test_images.f32    float32 [n_test][64]
    digits_test_labels.i32    int32   [n_test]
The split and scaling are gc.datasets.load_digits()'s (1438 train, 359 test images).

The C training program visits the training set in the order `batch_indices` computes (a
splitmix64-driven Fisher-Yates shuffle per epoch, written out in train_digits.c), so a Python
Session run of the same steps (`python examples/aot/export_digits.py --check-steps N`) gives the
same bits: same loss, same weights, same test accuracy.

Run:  python examples/aot/export_digits.py --out /tmp/digits_aot [--batch 64]
      cd /tmp/digits_aot && make programs PROGRAMS="train_digits.c infer_digits.c"
      ./bin/train_digits 300 && ./bin/infer_digits
"""

import argparse
import os
import shutil
import sys

import numpy as np

import graphc as gc

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = ("train_digits.c", "infer_digits.c")
FEATURES = 64
MASK64 = (1 << 64) - 1


def build_model(hidden=128, seed=0):
    """examples/train_digits.py's 64-128-10 MLP (same layers, inits and optimizer), with its
    training step recorded as the entry "train" and two inference entries over the logits."""
    g = gc.Graph()
    with g:
        x = gc.placeholder("x", (None, FEATURES))
        y = gc.placeholder("y", (None,), dtype="int64")
        with gc.name_scope("fc1"):
            w1 = gc.variable("w", (FEATURES, hidden), init=gc.init.kaiming_uniform(seed=seed))
            b1 = gc.variable("b", (hidden,))
            h = gc.relu(x @ w1 + b1)
        with gc.name_scope("fc2"):
            w2 = gc.variable("w", (hidden, 10), init=gc.init.xavier_uniform(seed=seed + 1))
            b2 = gc.variable("b", (10,))
        logits = gc.add(h @ w2, b2, name="logits")  # outside the scope: the C name is ..._FETCH_LOGITS
        loss = gc.softmax_cross_entropy(logits, y, name="loss")
        gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss, name="train")
        g.entry("evaluate", fetches=[logits])
        g.entry("predict", fetches=[logits])
    return g, logits, loss


def compile_program(graph, batch, n_test):
    """The program of the three entries: train at `batch`, evaluate at `n_test`, predict at 1."""
    shapes = {"x": (batch, FEATURES), "y": (batch,),
              "evaluate": {"x": (n_test, FEATURES)}, "predict": {"x": (1, FEATURES)}}
    return gc.compile(graph, entries=["train", "evaluate", "predict"], shapes=shapes)


def splitmix64(state):
    """One step of splitmix64: returns (new_state, output), both uint64 as Python ints."""
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def batch_indices(n, batch, steps, seed):
    """The training rows of every step, exactly as train_digits.c picks them: at the start of
    each epoch (every n // batch steps) the identity order 0..n-1 is shuffled in place by
    Fisher-Yates (i from n-1 down to 1, j = splitmix64() % (i + 1)) with one splitmix64 stream
    seeded by `seed`; step s takes rows [b*batch, (b+1)*batch) of that order, b = s % (n // batch).
    Returns an int array (steps, batch)."""
    per_epoch = n // batch
    if per_epoch < 1:
        raise ValueError(f"batch {batch} is larger than the {n} training rows")
    state = seed & MASK64
    out = np.empty((steps, batch), dtype=np.int64)
    order = list(range(n))
    for s in range(steps):
        if s % per_epoch == 0:
            order = list(range(n))
            for i in range(n - 1, 0, -1):
                state, r = splitmix64(state)
                j = r % (i + 1)
                order[i], order[j] = order[j], order[i]
        b = s % per_epoch
        out[s] = order[b * batch:(b + 1) * batch]
    return out


def write_data(out_dir):
    """Write the four raw data files; returns ((xtr, ytr), (xte, yte)) as written."""
    (xtr, ytr), (xte, yte) = gc.datasets.load_digits()
    files = {"digits_train_images.f32": xtr.astype("<f4"), "digits_train_labels.i32": ytr.astype("<i4"),
             "digits_test_images.f32": xte.astype("<f4"), "digits_test_labels.i32": yte.astype("<i4")}
    for name, array in files.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(np.ascontiguousarray(array).tobytes())
    return (xtr, ytr), (xte, yte)


def export(out_dir, batch=64, name="digits", copy_programs=True):
    """Emit the artifact and the data into `out_dir`; returns (program, EmitResult)."""
    os.makedirs(out_dir, exist_ok=True)
    (_, _), (xte, _) = write_data(out_dir)
    graph, _, _ = build_model()
    model_path = os.path.join(out_dir, "model.pb")
    graph.save(model_path)
    program = compile_program(gc.load(model_path), batch, len(xte))
    result = gc.emit_c(program, out_dir, name=name)
    if copy_programs:
        for program_file in PROGRAMS:
            shutil.copy2(os.path.join(HERE, program_file), os.path.join(out_dir, program_file))
    return program, result


def python_run(program, steps, batch, seed=1, threads=1):
    """What train_digits.c does, through gc.Session: `steps` training steps over the same
    batches, then the test accuracy through the "evaluate" entry.  Returns
    (session, last loss as float32, test accuracy, predictions)."""
    (xtr, ytr), (xte, yte) = gc.datasets.load_digits()
    sess = gc.Session(program, threads=threads)
    loss = np.float32(np.nan)
    for idx in batch_indices(len(xtr), batch, steps, seed):
        out = sess.run({"x": xtr[idx], "y": ytr[idx]}, entry="train")
        loss = np.float32(out["loss"])
    logits = sess.run({"x": xte}, entry="evaluate")["logits"]
    predictions = np.argmax(logits, axis=1)
    return sess, loss, int(np.sum(predictions == yte)), predictions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the artifact and the data files")
    parser.add_argument("--batch", type=int, default=64, help="training batch size (default 64)")
    parser.add_argument("--name", default="digits", help="the artifact's name (C prefix); the C programs "
                        "of this folder expect 'digits'")
    parser.add_argument("--check-steps", type=int, default=0, metavar="N",
                        help="also train N steps through gc.Session in the order train_digits.c uses "
                             "and print the loss and test accuracy the C program must print")
    parser.add_argument("--seed", type=int, default=1, help="shuffle seed for --check-steps (train_digits.c's)")
    parser.add_argument("--threads", type=int, default=1, help="Session threads for --check-steps")
    args = parser.parse_args(argv)
    program, result = export(args.out, args.batch, args.name)
    print(f"emitted {result.name}: {len(result.files)} files in {args.out} "
          f"(entries {', '.join(program.entries)}; arena {program.arena_bytes:,} B)")
    print(f'next: cd {args.out} && make programs PROGRAMS="{" ".join(PROGRAMS)}" && ./bin/train_digits 300')
    if args.check_steps:
        _, loss, correct, predictions = python_run(program, args.check_steps, args.batch, args.seed, args.threads)
        print(f"python session, {args.check_steps} steps (seed {args.seed}, threads {args.threads}): "
              f"final loss {float(loss):.9g}, test accuracy {correct}/{len(predictions)} "
              f"= {correct / len(predictions):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
