"""Train a small ResNet on the shipped 8×8 digits with graphc, end to end.

    gc.nn layers → save model.pb → load → compile a training plan and an inference plan
    from the same .pb → train in the C++ runtime with a progress bar, checkpointing every
    epoch → evaluate on the test set (and check the inference plan against the numpy reference
    interpreter) → PNGs of the loss curve and of the misclassified digits

Run:  python examples/train_cnn.py [--epochs 15] [--threads 2] [--out DIR] [--resume]
      python examples/train_cnn.py --quick --epochs 1      # a few seconds: checks the loss falls
      mpirun -np 2 python examples/train_cnn.py --data-parallel --threads 1   # 2 replicas, --batch each
                                                                  # (docs/data_parallel.md: root flags)

The plots need matplotlib: pip install "graphc[plot]".
"""

import argparse
import json
import os
import sys
import time

import numpy as np

import graphc as gc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dp_common  # noqa: E402

ACCURACY_TARGET = 0.985


def build_model(width=32, dropout=0.1):
    """A ResNet for 1×8×8 images: conv-bn-relu stem, a residual block at 8×8, one at 4×4
    with twice the channels, global average pooling, dropout, a linear classifier."""
    nn = gc.nn
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.ResidualBlock(width, width),
        nn.ResidualBlock(width, 2 * width, stride=2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
        nn.Linear(2 * width, 10))


def optimizer(lr):
    return gc.optim.SGD(lr=lr, momentum=0.9, weight_decay=5e-4)


def build_graph(width, lr):
    """The model as a graph: placeholders x (N, 1, 8, 8) and y (N,), the logits, the mean
    cross-entropy loss, and SGD with momentum as the training spec."""
    g = gc.Graph()
    with g:
        x = gc.placeholder("x", (None, 1, 8, 8))
        y = gc.placeholder("y", (None,), dtype="int64")
        logits = build_model(width)(x)
        loss = gc.softmax_cross_entropy(logits, y, name="loss")
        optimizer(lr).minimize(loss)
    return g, logits.name, loss.name


def move_state(src, dst):
    """Every persistent variable of ``src`` (weights, batch-norm statistics, optimizer state)
    into ``dst``, a plan of the same model with the same variables."""
    for name in src.variable_names:
        dst.set_variable(name, src.get_variable(name))


def accuracy(infer, train, logits_name, xte, yte):
    """Test accuracy and predictions with the training session's current weights."""
    infer.load_state_dict(train.state_dict())
    predictions = np.argmax(infer.run({"x": xte})[logits_name], axis=1)
    return float(np.mean(predictions == yte)), predictions


def save_plots(out_dir, losses, steps_per_epoch, test_acc, xte, yte, predictions):
    """Loss curve and misclassified digits as PNGs; returns the paths, or None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.6, alpha=0.5, label="loss per step")
    k = max(1, steps_per_epoch)
    if len(losses) >= k:
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, lw=1.5, label=f"mean of the last {k} steps")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy")
    ax.set_yscale("log")
    handles = ax.get_legend_handles_labels()
    if test_acc:
        ax2 = ax.twinx()
        ax2.plot(np.arange(1, len(test_acc) + 1) * steps_per_epoch, [100 * a for a in test_acc], "o-", color="C2",
                 label="test accuracy (right axis)")
        ax2.set_ylabel("test accuracy (%)")
        more = ax2.get_legend_handles_labels()
        handles = (handles[0] + more[0], handles[1] + more[1])
    ax.legend(*handles, loc="center right", fontsize=8)
    ax.set_title("graphc: ResNet on the 8×8 digits")
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "loss.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    wrong = np.flatnonzero(predictions != yte)[:40]
    cols = max(1, min(10, len(wrong)))
    rows = max(1, (len(wrong) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(cols * 1.1, 4), rows * 1.3 + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong):
        ax.imshow(xte[i, 0], cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{yte[i]}→{predictions[i]}", fontsize=9, color="C3")
    fig.suptitle(f"misclassified test digits: {len(np.flatnonzero(predictions != yte))} (true→predicted)",
                 fontsize=10)
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "misclassified.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=32, help="batch of one step (of each rank with --data-parallel)")
    parser.add_argument("--width", type=int, default=32, help="channels of the stem and the first block")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--decay-at", type=int, default=None,
                        help="epoch from which the learning rate is lr/10 (default: two thirds of --epochs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights, the batch order and dropout")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="folder for model.pb, the plans, the checkpoint and the PNGs")
    parser.add_argument("--resume", action="store_true", help="start from OUT/checkpoint.npz when it exists")
    parser.add_argument("--quick", action="store_true",
                        help="a reduced configuration (narrow model, 512 training images) that checks the loss falls")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    dp_common.add_argument(parser)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch < 1:
        parser.error("--epochs and --batch must be >= 1")
    world = dp_common.World(args.data_parallel)
    say = world.print

    (xtr, ytr), (xte, yte) = gc.datasets.load_digits(images=True)
    if args.quick:
        xtr, ytr, args.width = xtr[:512], ytr[:512], min(args.width, 8)
    out_dir = world.output_dir(args.out, "graphc-cnn-")

    gc.nn.manual_seed(args.seed)
    graph, logits_name, loss_name = build_graph(args.width, args.lr)
    model_path = os.path.join(out_dir, "model.pb")
    if world.root:
        graph.save(model_path)
    world.barrier()
    model = gc.load(model_path)          # both plans start from the file, as a deployment would

    decay_at = round(2 * args.epochs / 3) if args.decay_at is None else args.decay_at
    t0 = time.perf_counter()
    shapes = {"x": (args.batch, 1, 8, 8), "y": (args.batch,)}
    # --data-parallel: the training plans gain allreduce steps for the gradients and divide them
    # by the number of ranks in the update (the world size comes from mpirun).
    dp = {"data_parallel": True} if args.data_parallel else {}
    train_plan = gc.compile(model, shapes=shapes, **dp)
    # The learning rate is part of a plan: the slower phase is a second training plan of the same
    # .pb with lr/10, and the state (weights, statistics, momentum) moves over at decay_at.
    slow_plan = (gc.compile(model, shapes=shapes, train=optimizer(args.lr / 10), **dp)
                 if decay_at < args.epochs else None)
    infer_plan = gc.compile(model, shapes={"x": (len(xte), 1, 8, 8)}, fetches=[logits_name], train=False)
    if world.root:
        train_plan.save(os.path.join(out_dir, "train.plan"))
        infer_plan.save(os.path.join(out_dir, "infer.plan"))
    report = train_plan.memory_report()
    say(f"compiled in {time.perf_counter() - t0:.2f} s: training plan {len(train_plan.steps)} steps, arena "
        f"{report['arena_bytes']:,} B, persistent {report['persistent_bytes']:,} B; inference plan "
        f"{len(infer_plan.steps)} steps")
    if args.data_parallel:
        say(world.describe(train_plan, args.batch))

    # A data-parallel plan's Session joins the ranks: every rank must have compiled the same plan,
    # and all start from rank 0's variables.
    fast = train = gc.Session(train_plan, threads=args.threads)
    slow = gc.Session(slow_plan, threads=args.threads) if slow_plan is not None else None
    infer = gc.Session(infer_plan, threads=args.threads)
    # The plan's batch size is fixed: drop the last, smaller batch of each epoch.  Data-parallel,
    # every rank draws the same global batches and takes its own --batch rows of each.
    shard = {"shard": train} if args.data_parallel else {}
    loader = gc.data.DataLoader((xtr, ytr), batch_size=args.batch, shuffle=True, seed=args.seed,
                                drop_last=True, **shard)
    checkpoint = os.path.join(out_dir, "checkpoint.npz")
    progress = os.path.join(out_dir, "checkpoint.json")
    resumed = args.resume and os.path.exists(checkpoint)
    if resumed:
        train.load_checkpoint(checkpoint)     # weights, batch-norm statistics and momentum buffers
        if os.path.exists(progress):
            with open(progress) as f:
                loader.epoch = int(json.load(f)["epochs_done"])   # continue with the next epoch's batches
        say(f"resumed from {checkpoint} after epoch {loader.epoch}")
        if slow is not None and loader.epoch >= decay_at:
            move_state(train, slow)
            train = slow

    def save(epochs_done):
        train.save_checkpoint(checkpoint)     # data-parallel: rank 0 writes, the others wait for it
        if world.root:
            gc.fileio.atomic_write(progress, json.dumps({"epochs_done": epochs_done}).encode())

    def evaluate():
        # Every rank holds the same weights: rank 0 alone measures the test accuracy.
        return accuracy(infer, train, logits_name, xte, yte)[0] if world.root else None

    losses, test_acc = [], []
    batch_loss = np.empty((), np.float32)
    t0 = time.perf_counter()
    epoch_seen = None
    for epoch, (xb, yb) in loader.epochs(args.epochs, progress=world.progress(not args.no_progress),
                                         desc="training"):
        if epoch_seen is not None and epoch != epoch_seen:
            save(epoch)
            test_acc.append(evaluate())
        if epoch == decay_at and train is fast and slow is not None:
            move_state(fast, slow)
            train = slow
        epoch_seen = epoch
        train.run({"x": xb, "y": yb}, out={loss_name: batch_loss})
        losses.append(float(batch_loss))
    train_time = time.perf_counter() - t0
    save(loader.epoch)
    # Data-parallel, each rank's loss is the mean over its shard: the mean over the ranks is the
    # loss of the global batch (one value per step, the same on every rank).
    losses = [float(v) for v in world.mean(losses)]
    per_epoch = len(loader)
    first = float(np.mean(losses[:min(per_epoch, 5)]))
    last = float(np.mean(losses[-min(per_epoch, 5):]))
    verdict = None
    if world.root:
        verdict = report_results(args, out_dir, model, infer, train, logits_name, xte, yte, losses, test_acc,
                                 per_epoch, decay_at, slow is not None, train_time)
    acc, failure = world.broadcast(verdict)   # every rank returns (and exits with) rank 0's verdict
    if failure:
        raise SystemExit(failure)
    return {"accuracy": acc, "first_loss": first, "last_loss": last, "quick": args.quick,
            "resumed": resumed}


def report_results(args, out_dir, model, infer, train, logits_name, xte, yte, losses, test_acc, per_epoch,
                   decay_at, decayed, train_time):
    """The final test accuracy, the check of the inference plan against the numpy reference
    interpreter, the printed figures and the plots.  Returns (accuracy, why the check failed or
    None): the caller shares it with the other ranks before exiting."""
    acc, predictions = accuracy(infer, train, logits_name, xte, yte)
    test_acc.append(acc)
    # The C++ inference plan against the numpy reference interpreter of the saved model, with
    # the trained weights (batch norm on running statistics, dropout the identity in both).
    weights = {name: infer.get_variable(name) for name in infer.variable_names}
    expected = gc.reference.evaluate(model, {"x": xte}, [logits_name], state=weights)[logits_name]
    got = infer.run({"x": xte})[logits_name]
    max_diff = float(np.max(np.abs(got - expected)))
    if not np.allclose(got, expected, rtol=1e-4, atol=1e-4):
        return acc, f"runtime and reference interpreter disagree: max |diff| = {max_diff:.3g}"

    first = float(np.mean(losses[:min(per_epoch, 5)]))
    last = float(np.mean(losses[-min(per_epoch, 5):]))
    print(f"trained {len(losses)} steps ({args.epochs} epochs of {per_epoch}; lr {args.lr:g}"
          + (f", {args.lr / 10:g} from epoch {decay_at}" if decayed else "") + f") in {train_time:.2f} s "
          f"({1e3 * train_time / max(len(losses), 1):.2f} ms/step)")
    print(f"loss {'fell' if last < first else 'did not fall'}: {first:.4f} (first steps) -> {last:.4f} (last steps)")
    print(f"inference plan matches the reference interpreter (max |diff| {max_diff:.2e})")
    print("test accuracy per epoch: " + " ".join(f"{100 * a:.1f}" for a in test_acc))
    print(f"test accuracy: {100 * acc:.2f}% ({len(xte)} images, {int(np.sum(predictions != yte))} wrong)")
    plots = save_plots(out_dir, losses, per_epoch, test_acc, xte, yte, predictions)
    if plots is None:
        print('plots skipped: matplotlib is not installed (pip install "graphc[plot]" or pip install matplotlib)')
    else:
        print("plots: " + ", ".join(plots))
    print(f"files: {out_dir} (model.pb, train.plan, infer.plan, checkpoint.npz)", flush=True)
    return acc, None


if __name__ == "__main__":
    result = main()
    if result["quick"]:   # the reduced configuration checks that training works: the loss falls
        sys.exit(0 if result["last_loss"] < result["first_loss"] or result["resumed"] else 1)
    sys.exit(0 if result["accuracy"] >= ACCURACY_TARGET else 1)
