"""A DCGAN-style GAN on the shipped 8×8 digits: two networks, two optimizers taking turns over
one set of variables, in one graph, one .pb, one compiled program and one Session.

    graph: G (z -> Linear -> 4×4 -> conv_transpose2d k4 s2 -> 8×8 -> conv 3×3 -> sigmoid, batch
           norm + ReLU between) and D (conv 3×3 -> conv k4 s2 -> Linear, leaky ReLU between)
    entries: train_d (Adam on D's variables: real digits -> 1, G(z) -> 0)
             train_g (Adam on G's variables: D(G(z)) -> 1, the non-saturating loss)
             sample  (inference: G(z) of a fed z, batch norm on running statistics)
    z of the training entries is drawn in the graph (gc.random_normal: a fresh draw every run,
    reproducible from the seed and resumable from a checkpoint); the sample entry takes z as a feed.
    model.pb -> gc.load -> gc.compile(entries=[...]) -> gan.program -> gc.Session(program): every
    step runs train_d then train_g; per epoch a checkpoint (--resume continues from it) and a PNG
    grid of 100 samples of a fixed z; at the end 500 samples scored by the digit classifier of
    examples/train_cnn.py (examples/gen_common.py): mean top-class probability >= 0.8 and >= 8 of
    the 10 classes, or the run exits non-zero (full config).

Run:  python examples/train_gan.py [--threads 2] [--out DIR] [--resume]
      python examples/train_gan.py --config tiny         # a few seconds, no scoring (tests)
      mpirun -np 2 python examples/train_gan.py --data-parallel --threads 1
          # 2 replicas: each its own shard of the digits and its own noise (docs/data_parallel.md)
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
import gen_common  # noqa: E402

# z: latent size; g_width/d_width: channels of the networks' 8×8 layers (the 4×4 ones have
# twice as many); steps: training steps (each one train_d run and one train_g run).
CONFIGS = {
    "full": dict(z=32, g_width=32, d_width=32, batch=64, steps=2400, lr=2e-4, digits=None, score="full"),
    # 64 digits: 4 steps an epoch, so a few steps cross an epoch's end (grid, checkpoint)
    "tiny": dict(z=8, g_width=4, d_width=4, batch=16, steps=6, lr=2e-4, digits=64, score="none"),
}
GRID_SAMPLES = 100


class Generator(gc.nn.Module):
    """z (N, z) -> images (N, 1, 8, 8) in (0, 1)."""

    def __init__(self, z, width, name=None):
        super().__init__(name)
        self.width = width
        self.fc = gc.nn.Linear(z, 2 * width * 4 * 4)
        self.bn0 = gc.nn.BatchNorm2d(2 * width)
        self.up = gc.nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1)    # 4×4 -> 8×8
        self.bn1 = gc.nn.BatchNorm2d(width)
        self.out = gc.nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, z):
        h = gc.reshape(self.fc(z), (-1, 2 * self.width, 4, 4))
        h = gc.relu(self.bn0(h))
        h = gc.relu(self.bn1(self.up(h)))
        return gc.sigmoid(self.out(h))


def discriminator(width, name=None):
    """images (N, 1, 8, 8) -> logits (N, 1) of "a real digit"; no batch norm, so that D's
    output for one image does not depend on the rest of its batch (real and fake batches go
    through D separately)."""
    nn = gc.nn
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),     # 8×8 -> 4×4
        nn.Flatten(), nn.Linear(2 * width * 4 * 4, 1), name=name)


def build_graph(cfg, seed):
    """The GAN as one graph with the entries train_d, train_g and sample; returns (graph, names)
    with names the value names the loop feeds and fetches."""
    adam = dict(betas=(0.5, 0.999))
    g = gc.Graph()
    with g:
        x = gc.placeholder("x", (None, 1, 8, 8))
        gen = Generator(cfg["z"], cfg["g_width"], name="G")
        disc = discriminator(cfg["d_width"], name="D")
        noise = gc.random_normal((cfg["batch"], cfg["z"]), seed=seed, name="noise")
        fake = gen(noise)
        real_logits = disc(x)
        # train_d sees G's output as data: no gradient into G's graph.
        fake_logits_d = disc(gc.stop_gradient(fake))
        fake_logits_g = disc(fake)
        # Binary cross-entropy with logits: -log sigmoid(l) = softplus(-l) for a "real" label,
        # -log(1 - sigmoid(l)) = softplus(l) for a "fake" one.
        d_loss = gc.add(gc.mean(gc.softplus(gc.neg(real_logits))), gc.mean(gc.softplus(fake_logits_d)),
                        name="d_loss")
        g_loss = gc.mean(gc.softplus(gc.neg(fake_logits_g)), name="g_loss")
        # D's belief that the real batch is real and that G's batch is real (0.5 each at balance).
        d_real = gc.mean(gc.sigmoid(real_logits), name="d_real")
        d_fake = gc.mean(gc.sigmoid(fake_logits_g), name="d_fake")
        trainable = {v.name for v in g.variables if v.trainable}   # not batch norm's running statistics
        d_vars = [n for n in disc.variables() if n in trainable]
        g_vars = [n for n in gen.variables() if n in trainable]
        gc.optim.Adam(cfg["lr"], **adam).minimize(d_loss, var_list=d_vars, name="train_d", fetches=[d_real])
        gc.optim.Adam(cfg["lr"], **adam).minimize(g_loss, var_list=g_vars, name="train_g", fetches=[d_fake])
        z = gc.placeholder("z", (None, cfg["z"]))
        images = gen(z)
        g.entry("sample", fetches=[images])
    names = {"d_loss": d_loss.name, "g_loss": g_loss.name, "d_real": d_real.name, "d_fake": d_fake.name,
             "images": images.name}
    return g, names


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="full",
                        help="full: the README's figures (a few minutes on 2 cores); tiny: seconds (tests)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the noise and the batch order")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="folder for model.pb, gan.program, checkpoints and PNGs")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz when it exists")
    parser.add_argument("--score", choices=("full", "quick", "none"), default=None,
                        help="score 500 samples with the full classifier (trained once into the cache), a quick "
                             "rough one (tests), or not at all (default: the config's)")
    parser.add_argument("--samples", type=int, default=gen_common.N_SAMPLES, help="samples scored at the end")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    dp_common.add_argument(parser)
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 0:
        parser.error("--steps must be >= 0")
    if args.samples < 1:
        parser.error("--samples must be >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = dict(CONFIGS[args.config])
    steps = cfg["steps"] if args.steps is None else args.steps
    score_with = cfg["score"] if args.score is None else args.score
    world = dp_common.World(args.data_parallel)
    say = world.print
    out_dir = world.output_dir(args.out, "graphc-gan-")

    # Every digit (train and test split): the GAN learns the distribution, nothing is held out.
    (xtr, _), (xte, _) = gc.datasets.load_digits(images=True)
    data = np.concatenate([xtr, xte])[:cfg["digits"]]

    gc.nn.manual_seed(args.seed)
    graph, names = build_graph(cfg, seed=args.seed)
    model_path = os.path.join(out_dir, "model.pb")
    if world.root:
        graph.save(model_path)
    world.barrier()
    model = gc.load(model_path)                   # the program starts from the file, as a deployment would

    t0 = time.perf_counter()
    batch = cfg["batch"]
    # --data-parallel: train_d and train_g each reduce their gradients over the ranks (buckets of
    # their own); each rank feeds its shard of the digits and draws its own noise.
    dp = {"data_parallel": True} if args.data_parallel else {}
    program = gc.compile(model, entries=["train_d", "train_g", "sample"],
                         shapes={"x": (batch, 1, 8, 8), "sample": {"z": (args.samples, cfg["z"])}}, **dp)
    program_path = os.path.join(out_dir, "gan.program")
    if world.root:
        program.save(program_path)
    world.barrier()
    program = gc.load_program(program_path)
    say(f"compiled {', '.join(program.entries)} in {time.perf_counter() - t0:.2f} s: "
        + ", ".join(f"{e} {len(program.plan(e).steps)} steps" for e in program.entries))
    if args.data_parallel:
        for e in ("train_d", "train_g"):
            say(f"{e}: " + world.describe(program.plan(e), batch))
    sess = gc.Session(program, threads=args.threads)

    shard = {"shard": sess} if args.data_parallel else {}
    loader = gc.data.DataLoader((data,), batch_size=batch, shuffle=True, seed=args.seed, drop_last=True, **shard)
    per_epoch = len(loader)
    checkpoint = os.path.join(out_dir, "checkpoint.npz")
    progress_path = os.path.join(out_dir, "checkpoint.json")
    done = 0
    resumed = args.resume and os.path.exists(checkpoint)
    if resumed:
        if not os.path.exists(progress_path):
            raise SystemExit(f"--resume: {checkpoint} has no {progress_path} saying how many steps it holds")
        sess.load_checkpoint(checkpoint)      # both networks, both Adam states, batch-norm statistics, rng/step
        with open(progress_path) as f:
            done = int(json.load(f)["steps_done"])
        say(f"resumed from {checkpoint} after step {done}")

    # A fixed z for the per-epoch grids, so that they show the same latent points improving.
    z_fixed = np.random.default_rng([args.seed, 1]).standard_normal((args.samples, cfg["z"])).astype(np.float32)

    def sample():
        return sess.run({"z": z_fixed}, entry="sample")[names["images"]]

    def save(steps_done):
        sess.save_checkpoint(checkpoint)     # data-parallel: rank 0 writes, the others wait
        if world.root:
            gc.fileio.atomic_write(progress_path, json.dumps({"steps_done": steps_done}).encode())

    def grid(epoch):
        path = os.path.join(out_dir, f"samples_epoch{epoch:03d}.png")
        if world.root:                # the same weights on every rank: rank 0 draws
            gc.images.save_grid(path, sample()[:GRID_SAMPLES], nrow=10)
        return path

    if not resumed and world.root:    # the real digits, to hold the samples against
        gc.images.save_grid(os.path.join(out_dir, "real_digits.png"), data[:GRID_SAMPLES], nrow=10)
    history = []                       # (d_loss, g_loss, d_real, d_fake) per step
    bar = gen_common.Progress(steps, desc="GAN", enabled=world.progress(not args.no_progress), initial=done)
    t0 = time.perf_counter()
    grids = []
    step = done
    try:
        while step < steps:
            epoch, skip = divmod(step, per_epoch)
            for b, (xb,) in enumerate(loader.batches(epoch)):
                if b < skip:
                    continue                    # a resumed epoch: the batches done before the checkpoint
                d = sess.run({"x": xb}, entry="train_d")
                gen_out = sess.run({}, entry="train_g")
                history.append((float(d[names["d_loss"]]), float(gen_out[names["g_loss"]]),
                                float(d[names["d_real"]]), float(gen_out[names["d_fake"]])))
                step += 1
                bar.update(d_loss=history[-1][0], g_loss=history[-1][1])
                if step == steps:
                    break
            if step % per_epoch == 0:
                # The grid before the checkpoint: a run resumed from here continues exactly as an
                # uninterrupted one, whatever sampling does to the shared state.
                grids.append(grid(epoch))
                save(step)
    finally:
        bar.close()
    train_time = time.perf_counter() - t0
    if step % per_epoch or step == done:
        save(step)                          # the end of a partial epoch (or nothing trained)

    # each rank's figures are over its own shard and noise: the mean over the ranks is the global batch's
    history = [tuple(float(v) for v in row) for row in world.mean(history).reshape(len(history), 4)]
    result = {"steps": step - done, "resumed": resumed, "grids": grids, "out": out_dir,
              "history": history, "config": args.config}
    if history:
        h = np.array(history)
        k = min(len(h), max(1, per_epoch))
        result.update(first_d_loss=float(h[:k, 0].mean()), last_d_loss=float(h[-k:, 0].mean()),
                      first_g_loss=float(h[:k, 1].mean()), last_g_loss=float(h[-k:, 1].mean()))
        say(f"trained {len(h)} steps (train_d + train_g, batch {batch}"
            + (f" per rank x {world.size} ranks" if args.data_parallel else "")
            + f", {per_epoch} steps an epoch) in {train_time:.1f} s ({1e3 * train_time / len(h):.1f} ms/step)")
        say(f"mean over the first/last {k} steps: d_loss {result['first_d_loss']:.3f} -> "
            f"{result['last_d_loss']:.3f}, g_loss {result['first_g_loss']:.3f} -> {result['last_g_loss']:.3f}, "
            f"D(real) {h[-k:, 2].mean():.3f}, D(G(z)) {h[-k:, 3].mean():.3f}")
    result["samples"] = None
    if world.root:                  # sampling and scoring: rank 0 (every rank holds the same weights)
        result.update(finish(args, sample, out_dir, grids, score_with))
    if score_with != "none":
        result["score"] = world.broadcast(result.get("score"))   # every rank exits with rank 0's verdict
    return result


def finish(args, sample, out_dir, grids, score_with):
    """The final samples, their grid and their score (when asked); returns the result's entries."""
    out = {}
    images = out["samples"] = sample()
    final = os.path.join(out_dir, "samples.png")
    gc.images.save_grid(final, images[:GRID_SAMPLES], nrow=10)
    print(f"sample grids: {len(grids)} per-epoch ({', '.join(os.path.basename(p) for p in grids[-3:])}"
          f"{', ...' if len(grids) > 3 else ''}) and the final {final}")
    if score_with != "none":
        clf = gen_common.classifier(threads=args.threads, quick=score_with == "quick")
        s = out["score"] = gen_common.score(clf(images))
        print(f"classifier ({100 * clf.test_accuracy:.1f}% test accuracy, {clf.folder}): " + gen_common.format_score(s))
    print(f"files: {out_dir} (model.pb, gan.program, checkpoint.npz, samples_epoch*.png, samples.png, "
          "real_digits.png)", flush=True)
    return out


if __name__ == "__main__":
    r = main()
    if r["config"] == "full" and "score" in r:
        sys.exit(0 if r["score"]["passed"] else 1)
