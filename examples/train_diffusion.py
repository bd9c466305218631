"""A denoising diffusion model (DDPM, Ho et al. 2020) on the shipped 8×8 digits: one graph with a
training entry and a sampling entry over one set of variables, one .pb, one compiled program
and one Session.

    forward process: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, ε ~ N(0, I), t in [0, T), a cosine schedule of
                     the β_t (Nichol & Dhariwal 2021); the digits scaled to [−1, 1]
    network:         ε̂(x_t, t): an MLP over the 64 pixels with residual blocks, each adding a
                     learned embedding of t (graphc has no sin/cos op, so the timestep embedding
                     is an nn.Embedding(T, width) table rather than sinusoids)
    entries:         train       (Adam on the ε loss ‖ε̂(x_t, t) − ε‖²; ε drawn in the graph with
                                  gc.random_normal, t fed, so a step needs only the images and t)
                     sample_step ((x_t, t) -> x_{t−1}: the DDPM update with the predicted x̂_0
                                  clipped to [−1, 1], plus σ_t z with z drawn in the graph, σ_0 = 0)
    sampling:        x_T ~ N(0, I); for t = T−1 … 0: x = sess.run({"x_t": x, "t": t}, entry="sample_step")
    model.pb -> gc.load -> gc.compile(entries=["train", "sample_step"]) -> diffusion.program ->
    gc.Session(program); a progress bar with the loss, a checkpoint and a PNG grid of 100 samples
    every --sample-every steps (--resume continues from the checkpoint), at the end 500 samples
    scored by the digit classifier of examples/train_cnn.py (examples/gen_common.py): mean
    top-class probability >= 0.8 and >= 8 of the 10 classes, or the run exits non-zero.

Run:  python examples/train_diffusion.py [--threads 2] [--out DIR] [--resume]
      python examples/train_diffusion.py --config tiny        # a few seconds, no scoring (tests)
      mpirun -np 2 python examples/train_diffusion.py --data-parallel --threads 1
          # 2 replicas: each its rows of every global batch and its own noise (docs/data_parallel.md)
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

import graphc as gc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dp_common  # noqa: E402
import gen_common  # noqa: E402

# T: diffusion steps; width: the MLP's hidden size; blocks: residual blocks; batch: training
# images per step; steps: training steps; sample_every: steps between a checkpoint + PNG grid
# (0: only at the end; an epoch of the 1438 digits is only 11 steps, while a grid costs T runs
# of sample_step, a few seconds, so grids come every 1000 steps rather than every epoch);
# samples: the sample_step entry's batch (the scored samples); score: the classifier that judges
# the samples (full, quick or none).
CONFIGS = {
    "full": dict(T=100, width=512, blocks=2, batch=128, steps=6000, lr=1e-3, sample_every=1000, samples=500,
                 digits=None, score="full"),
    # a few seconds: 64 digits, a narrow net, a short chain; a grid at step 4 and at the end
    "tiny": dict(T=8, width=16, blocks=1, batch=16, steps=6, lr=1e-2, sample_every=4, samples=100,
                 digits=64, score="none"),
}
GRID_SAMPLES = 100


def cosine_schedule(T, s=0.008):
    """The float64 tables of a cosine schedule (Nichol & Dhariwal): ᾱ_t = f(t + 1)/f(0) with
    f(u) = cos²((u/T + s)/(1 + s)·π/2), β_t = 1 − ᾱ_t/ᾱ_{t−1} clipped to 0.999, for t in [0, T).
    Returns a dict of arrays of length T: beta, alpha, alpha_bar, alpha_bar_prev (ᾱ_{t−1}, 1 at
    t = 0) and sigma (the posterior's standard deviation √(β_t (1 − ᾱ_{t−1})/(1 − ᾱ_t)); 0 at t = 0)."""
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * np.pi / 2) ** 2
    beta = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    alpha = 1.0 - beta
    alpha_bar = np.cumprod(alpha)
    alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
    sigma = np.sqrt(beta * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar))
    return {"beta": beta, "alpha": alpha, "alpha_bar": alpha_bar, "alpha_bar_prev": alpha_bar_prev, "sigma": sigma}


def sample_update(x_t, eps_hat, t, sched, z):
    """One DDPM step in numpy (float64), the specification of the sample_step entry: x̂_0 =
    (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t clipped to [−1, 1], then the posterior mean
    √ᾱ_{t−1} β_t/(1 − ᾱ_t) x̂_0 + √α_t (1 − ᾱ_{t−1})/(1 − ᾱ_t) x_t, plus σ_t z.
    ``t`` is an int array (N,), the others (N, 1, 8, 8)."""
    c = {k: v[t].reshape(-1, 1, 1, 1) for k, v in sched.items()}
    x0 = np.clip((x_t - np.sqrt(1.0 - c["alpha_bar"]) * eps_hat) / np.sqrt(c["alpha_bar"]), -1.0, 1.0)
    mean = (np.sqrt(c["alpha_bar_prev"]) * c["beta"] / (1.0 - c["alpha_bar"]) * x0
            + np.sqrt(c["alpha"]) * (1.0 - c["alpha_bar_prev"]) / (1.0 - c["alpha_bar"]) * x_t)
    return mean + c["sigma"] * z


class Block(gc.nn.Module):
    """h + W₂ SiLU(W₁ SiLU(h) + E[t]): a residual MLP block told the timestep by its own embedding."""

    def __init__(self, T, width, name=None):
        super().__init__(name)
        self.fc1 = gc.nn.Linear(width, width)
        self.emb = gc.nn.Embedding(T, width)
        self.fc2 = gc.nn.Linear(width, width)

    def forward(self, h, t):
        return h + self.fc2(gc.silu(self.fc1(gc.silu(h)) + self.emb(t)))


class Denoiser(gc.nn.Module):
    """ε̂(x_t, t): noisy images (N, 1, 8, 8) and int64 timesteps (N,) -> the predicted noise (N, 1, 8, 8)."""

    def __init__(self, T, width, blocks, name=None):
        super().__init__(name)
        self.inp = gc.nn.Linear(64, width)
        self.emb = gc.nn.Embedding(T, width)
        self.n_blocks = blocks
        for i in range(blocks):
            self.add_module(f"block{i}", Block(T, width))
        self.out = gc.nn.Linear(width, 64)

    def forward(self, x, t):
        h = self.inp(gc.reshape(x, (-1, 64))) + self.emb(t)
        for i in range(self.n_blocks):
            h = getattr(self, f"block{i}")(h, t)
        return gc.reshape(self.out(gc.silu(h)), (-1, 1, 8, 8))


def _gather(table, t):
    """table[t] as (N, 1, 1, 1) float32: a per-sample coefficient broadcast over the image."""
    return gc.reshape(gc.take(gc.constant(np.asarray(table, np.float32)), t), (-1, 1, 1, 1))


def build_graph(cfg, seed):
    """The diffusion model as one graph with the entries ``train`` (feeds x: images in [0, 1],
    t: int64 timesteps; fetches the loss) and ``sample_step`` (feeds x_t, t; fetches x_prev,
    eps_hat and z)."""
    sched = cosine_schedule(cfg["T"])
    net = Denoiser(cfg["T"], cfg["width"], cfg["blocks"], name="denoiser")
    g = gc.Graph()
    with g:
        t = gc.placeholder("t", (None,), dtype="int64")
        # training: noise the images to step t in the graph, predict the noise
        x = gc.placeholder("x", (None, 1, 8, 8))
        x0 = x * 2.0 - 1.0
        eps = gc.random_normal(x0, seed=seed, name="eps")
        x_noisy = _gather(np.sqrt(sched["alpha_bar"]), t) * x0 + _gather(np.sqrt(1.0 - sched["alpha_bar"]), t) * eps
        err = net(x_noisy, t) - eps
        loss = gc.mean(err * err, name="loss")
        gc.optim.Adam(cfg["lr"]).minimize(loss, name="train")
        # sampling: one step of the reverse process (the same network: the same variables)
        x_t = gc.placeholder("x_t", (None, 1, 8, 8))
        eps_hat = gc.reshape(net(x_t, t), (-1, 1, 8, 8), name="eps_hat")     # (a no-op reshape that names it)
        x0_hat = (x_t - _gather(np.sqrt(1.0 - sched["alpha_bar"]), t) * eps_hat) / _gather(
            np.sqrt(sched["alpha_bar"]), t)
        x0_hat = gc.minimum(gc.maximum(x0_hat, -1.0), 1.0)
        mean = (_gather(np.sqrt(sched["alpha_bar_prev"]) * sched["beta"] / (1.0 - sched["alpha_bar"]), t) * x0_hat
                + _gather(np.sqrt(sched["alpha"]) * (1.0 - sched["alpha_bar_prev"]) / (1.0 - sched["alpha_bar"]), t)
                * x_t)
        z = gc.random_normal(x_t, seed=seed + 1, name="z")
        x_prev = gc.add(mean, _gather(sched["sigma"], t) * z, name="x_prev")
        g.entry("sample_step", fetches=[x_prev, eps_hat, z])
    return g, sched, {"loss": loss.name, "x_prev": x_prev.name, "eps_hat": eps_hat.name, "z": z.name}


def batch_of_step(step, seed, n_images, batch, T):
    """The image indices and timesteps of training step ``step``: drawn from a generator keyed on
    (seed, step), so a resumed run sees the batches an uninterrupted one would."""
    rng = np.random.default_rng([seed, step])
    return rng.integers(0, n_images, batch), rng.integers(0, T, batch, dtype=np.int64)


def sample(sess, names, T, n, seed):
    """``n`` images (N, 1, 8, 8) in [0, 1]: x_T ~ N(0, I) from a seeded generator, then the
    sample_step entry once per diffusion step (its z is drawn in the graph)."""
    # x_T from its own stream (the batches' are [seed, step]); each grid is still a fresh draw:
    # the in-graph z differs every run, and β_{T−1} = 0.999 leaves little of x_T after one step
    x = np.random.default_rng([seed, 0, 1]).standard_normal((n, 1, 8, 8)).astype(np.float32)
    ts = np.empty(n, np.int64)
    for step in reversed(range(T)):
        ts.fill(step)
        x = sess.run({"x_t": x, "t": ts}, entry="sample_step")[names["x_prev"]]
    return np.clip((x + 1.0) / 2.0, 0.0, 1.0)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="full",
                        help="full: the README's figures (a few minutes on 2 cores); tiny: seconds (tests)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    parser.add_argument("--sample-every", type=int, default=None,
                        help="steps between a checkpoint and a PNG grid (0: only at the end; default: the config's)")
    parser.add_argument("--score", choices=("full", "quick", "none"), default=None,
                        help="the classifier that scores the samples (default: the config's; quick: a rough one "
                             "trained in seconds)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the batches and the noise")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="folder for model.pb, the program, the checkpoint and the PNGs")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz when it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    dp_common.add_argument(parser)
    args = parser.parse_args(argv)
    cfg = dict(CONFIGS[args.config])
    for key in ("steps", "sample_every", "score"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if cfg["steps"] < 0 or cfg["sample_every"] < 0:
        parser.error("--steps and --sample-every must be >= 0")
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    return args, cfg


def main(argv=None):
    """The whole example; returns a dict of the figures (also printed)."""
    args, cfg = parse_args(argv)
    world = dp_common.World(args.data_parallel)
    say = world.print
    out_dir = world.output_dir(args.out, "graphc-diffusion-")
    (xtr, _), _ = gc.datasets.load_digits(images=True)
    if cfg["digits"] is not None:
        xtr = xtr[:cfg["digits"]]

    gc.nn.manual_seed(args.seed)
    graph, sched, names = build_graph(cfg, args.seed)
    model_path = os.path.join(out_dir, "model.pb")
    if world.root:
        graph.save(model_path)
    world.barrier()
    model = gc.load(model_path)               # the program starts from the file, as a deployment would
    t0 = time.perf_counter()
    shapes = {"x": (cfg["batch"], 1, 8, 8), "t": (cfg["batch"],),
              "sample_step": {"x_t": (cfg["samples"], 1, 8, 8), "t": (cfg["samples"],)}}
    # --data-parallel: the train entry reduces its gradients over the ranks; each rank feeds its
    # rows of the global batch and draws its own noise in the graph.
    dp = {"data_parallel": True} if args.data_parallel else {}
    program = gc.compile(model, entries=["train", "sample_step"], shapes=shapes, **dp)
    if world.root:
        program.save(os.path.join(out_dir, "diffusion.program"))
    report = program.memory_report()
    say(f"compiled 2 entries in {time.perf_counter() - t0:.2f} s: train {len(program.plan('train').steps)} steps, "
          f"sample_step {len(program.plan('sample_step').steps)} steps; one arena of "
          f"{report['arena_bytes']:,} B, persistent {report['persistent_bytes']:,} B")
    if args.data_parallel:
        say("train: " + world.describe(program.plan("train"), cfg["batch"]))
    sess = gc.Session(program, threads=args.threads)

    checkpoint = os.path.join(out_dir, "checkpoint.npz")
    progress_file = os.path.join(out_dir, "checkpoint.json")
    done = 0
    resumed = args.resume and os.path.exists(checkpoint)
    if resumed:
        sess.load_checkpoint(checkpoint)       # weights, Adam's moments and step, the random counter
        with open(progress_file) as f:
            done = int(json.load(f)["steps_done"])
        say(f"resumed from {checkpoint} after step {done}")

    def save(steps_done):
        sess.save_checkpoint(checkpoint)      # data-parallel: rank 0 writes, the others wait
        if world.root:
            gc.fileio.atomic_write(progress_file, json.dumps({"steps_done": steps_done}).encode())

    grids = []

    def grid(path):
        if world.root:                        # every rank holds the same weights: rank 0 samples
            gc.images.save_grid(path, sample(sess, names, cfg["T"], cfg["samples"], args.seed)[:GRID_SAMPLES],
                                nrow=10)
        grids.append(path)

    losses = []
    loss = np.empty((), np.float32)
    bar = gen_common.Progress(cfg["steps"], "training", enabled=world.progress(not args.no_progress),
                              initial=min(done, cfg["steps"]))
    rows = slice(world.rank * cfg["batch"], (world.rank + 1) * cfg["batch"])   # this rank's rows of a step
    t0 = time.perf_counter()
    sampling_seconds = 0.0
    for step in range(done, cfg["steps"]):
        idx, ts = batch_of_step(step, args.seed, len(xtr), cfg["batch"] * world.size, cfg["T"])
        sess.run({"x": xtr[idx[rows]], "t": ts[rows]}, entry="train", out={names["loss"]: loss})
        losses.append(float(loss))
        bar.update(loss=float(np.mean(losses[-50:])))
        if cfg["sample_every"] and (step + 1) % cfg["sample_every"] == 0 and step + 1 < cfg["steps"]:
            # the grid runs sample_step, which advances the random counter: it comes before the
            # checkpoint, so that a resumed run draws the noise an uninterrupted one would
            s0 = time.perf_counter()
            grid(os.path.join(out_dir, f"samples_step{step + 1:06d}.png"))
            sampling_seconds += time.perf_counter() - s0
            save(step + 1)
    bar.close()
    train_seconds = time.perf_counter() - t0 - sampling_seconds
    save(cfg["steps"])
    losses = [float(v) for v in world.mean(losses)]   # each rank's loss is over its rows: the global batch's

    samples, sample_seconds = None, 0.0
    final = os.path.join(out_dir, "samples.png")
    if world.root:
        t0 = time.perf_counter()
        samples = sample(sess, names, cfg["T"], cfg["samples"], args.seed)
        sample_seconds = time.perf_counter() - t0
        gc.images.save_grid(final, samples[:GRID_SAMPLES], nrow=10)
    grids.append(final)

    k = max(1, min(50, len(losses) // 5))
    first = float(np.mean(losses[:k])) if losses else math.nan
    last = float(np.mean(losses[-k:])) if losses else math.nan
    trained = len(losses)
    say(f"trained {trained} steps in {train_seconds:.1f} s ({1e3 * train_seconds / max(trained, 1):.1f} ms/step); "
        f"loss {first:.4f} (first steps) -> {last:.4f} (last steps)")
    say(f"sampled {cfg['samples']} digits in {sample_seconds:.1f} s ({cfg['T']} runs of sample_step, "
        f"{1e3 * sample_seconds / cfg['T']:.1f} ms each)")
    result = {"config": args.config, "steps": trained, "resumed": resumed, "losses": losses, "first_loss": first,
              "last_loss": last, "grids": grids, "samples": samples, "train_seconds": train_seconds,
              "sample_seconds": sample_seconds, "score": None}
    if cfg["score"] != "none":
        if world.root:
            clf = gen_common.classifier(threads=args.threads, quick=cfg["score"] == "quick")
            s = gen_common.score(clf(samples))
            print(f"classifier ({100 * clf.test_accuracy:.1f}% test accuracy): " + gen_common.format_score(s))
            result["score"] = s
        result["score"] = world.broadcast(result["score"])   # every rank exits with rank 0's verdict
    say(f"files: {out_dir} (model.pb, diffusion.program, checkpoint.npz, " + ", ".join(
        os.path.basename(p) for p in grids) + ")")
    return result


def exit_code(result):
    """1 when the full configuration's samples miss the bar (mean top-class probability >= 0.8
    and >= 8 of the 10 classes), else 0: the tiny configuration only checks that the pieces run."""
    score = result["score"]
    return 1 if result["config"] == "full" and score is not None and not score["passed"] else 0


if __name__ == "__main__":
    sys.exit(exit_code(main()))
