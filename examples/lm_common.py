"""The parts shared by examples/train_gpt.py and examples/train_lstm_lm.py: the corpus, one .pb
with a training head and a sampling head, three plans compiled from it, the training loop with
a progress bar, bits per character, checkpoints and text generation.

The graph of a character language model ``model(x) -> logits (N, T, V)``:

* ``x``, ``y``: int64 (N, T) windows of the corpus, ``y`` the next character of each ``x``;
  ``loss`` = mean softmax cross-entropy over the N·T predictions (nats per character).
* ``pos`` (N,) int64 and ``temperature`` (a float32 scalar) feed the sampling head:
  ``next_values``/``next_ids`` = ``gc.topk(logits[:, pos] / temperature, k)``.  The generator
  runs this inference plan once per new character and draws from the k candidates with
  ``gc.text.sample_from_topk`` (a seeded numpy Generator, so a seed gives the same text).

The plans (all from the one saved ``model.pb``):

* training: ``x``, ``y`` of (batch, context), the optimizer's update, fetch ``loss``;
* evaluation: inference form (dropout off), fetch ``loss`` over validation windows;
* generation: inference form, batch 1, fetch the sampling head.

``--data-parallel`` (under ``mpirun -np N``, docs/data_parallel.md): the training plan is compiled
with ``data_parallel=True``; every rank draws the same global batch of ``batch`` × N windows and
trains on its own ``batch`` of them; the validation batches are split among the ranks; rank 0
prints, draws the progress bar, writes the files and generates the text.
"""

import argparse
import json
import math
import os
import time

import dp_common  # examples/dp_common.py: train_gpt.py and train_lstm_lm.py put examples/ on sys.path
import numpy as np

import graphc as gc

CONFIG_HELP = "tiny: a few seconds (tests); small: the README's figures (a few minutes on 2 cores)"


def parse_args(description, configs, argv=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", choices=sorted(configs), default="small", help=CONFIG_HELP)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the config's)")
    parser.add_argument("--batch", type=int, default=None,
                        help="windows per training step, of each rank with --data-parallel (default: the config's)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the weights, the batch order, dropout and the sampling")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="folder for model.pb, the plans and the checkpoint")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz when it exists")
    parser.add_argument("--prompt", default="def ", help="the text the generated characters continue")
    parser.add_argument("--tokens", type=int, default=300, help="characters to generate")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=20, help="sample among the k most likely characters")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    dp_common.add_argument(parser)
    args = parser.parse_args(argv)
    cfg = dict(configs[args.config])
    if args.steps is not None:
        cfg["steps"] = args.steps
    if args.lr is not None:
        cfg["lr"] = args.lr
    if args.batch is not None:
        cfg["batch"] = args.batch
    if cfg["batch"] < 1:
        parser.error("--batch must be >= 1")
    if cfg["steps"] < 0:
        parser.error("--steps must be >= 0")
    if args.tokens < 0:
        parser.error("--tokens must be >= 0")
    if not args.temperature > 0:
        parser.error("--temperature must be > 0")
    if not 1 <= args.top_k <= cfg["vocab"]:
        parser.error(f"--top-k must be in [1, {cfg['vocab']}] (the vocabulary)")
    return args, cfg


def load_text(cfg, seed):
    """(tokenizer, train ids, validation ids): the standard library's .py files in a seeded
    order, the first cfg['corpus_bytes'] bytes, one id per character (vocabulary cfg['vocab'])."""
    tok = gc.text.ByteTokenizer(cfg["vocab"])
    ids = tok.encode(gc.text.stdlib_corpus(max_bytes=cfg["corpus_bytes"], seed=seed))
    train, val = gc.text.train_val_split(ids, val_fraction=0.1)
    return tok, train, val


def unigram_bits(train, val, vocab):
    """Bits per character of the validation text under the training text's character
    frequencies (add-one smoothing): the baseline a language model must beat."""
    counts = np.bincount(train, minlength=vocab).astype(np.float64) + 1.0
    logp = np.log2(counts / counts.sum())
    return float(-np.mean(logp[val]))


def build_graph(model, cfg, top_k):
    """The .pb's graph: ``model`` (a gc.nn.Module mapping (N, T) ids to (N, T, V) logits) with
    the loss, the sampling head and the optimizer (cfg['optimizer'](lr))."""
    t, v = cfg["context"], cfg["vocab"]
    g = gc.Graph()
    with g:
        x = gc.placeholder("x", (None, t), dtype="int64")
        y = gc.placeholder("y", (None, t), dtype="int64")
        logits = model(x)
        loss = gc.softmax_cross_entropy(gc.reshape(logits, (-1, v)), gc.reshape(y, (-1,)), name="loss")
        pos = gc.placeholder("pos", (1,), dtype="int64")
        temperature = gc.placeholder("temperature", (), dtype="float32")
        last = gc.reshape(gc.take(logits, pos, axis=1), (-1, v))        # (N, V): the logits at pos
        gc.topk(last / temperature, top_k, axis=-1, name="next")
        cfg["optimizer"](cfg["lr"]).minimize(loss)
    return g


def compile_plans(model_path, cfg, out_dir, world=None, data_parallel=False):
    """The training, evaluation and generation plans of the saved model, each saved beside it
    (by rank 0).  ``data_parallel``: the training plan reduces its gradients over the ranks."""
    world = world or dp_common.World(False)
    model = gc.load(model_path)
    t = cfg["context"]
    t0 = time.perf_counter()
    dp = {"data_parallel": True} if data_parallel else {}
    train = gc.compile(model, shapes={"x": (cfg["batch"], t), "y": (cfg["batch"], t)}, fetches=["loss"], **dp)
    evaluate = gc.compile(model, shapes={"x": (cfg["eval_batch"], t), "y": (cfg["eval_batch"], t)},
                          fetches=["loss"], train=False)
    generate = gc.compile(model, shapes={"x": (1, t), "pos": (1,), "temperature": ()},
                          fetches=["next:0", "next:1"], train=False)
    seconds = time.perf_counter() - t0
    if world.root:
        for name, plan in (("train", train), ("eval", evaluate), ("generate", generate)):
            plan.save(os.path.join(out_dir, f"{name}.plan"))
    report = train.memory_report()
    world.print(f"compiled 3 plans in {seconds:.2f} s: training plan {len(train.steps)} steps, arena "
          f"{report['arena_bytes'] / 2**20:.1f} MiB, persistent {report['persistent_bytes'] / 2**20:.1f} MiB; "
                f"generation plan {len(generate.steps)} steps")
    if data_parallel:
        world.print(world.describe(train, cfg["batch"]))
    return train, evaluate, generate


def validation_bits(sess, state_from, windows, eval_batch, world=None):
    """Mean bits per character of the model (the weights of ``state_from``) over the
    validation windows, in whole batches of ``eval_batch``.  Data-parallel, rank r evaluates
    the batches r, r + N, ... and the ranks add up their sums (every rank holds the same
    weights), so each rank returns the same figure as one process."""
    world = world or dp_common.World(False)
    sess.load_state_dict(state_from.state_dict())
    x, y = windows
    starts = list(range(0, len(x) - eval_batch + 1, eval_batch))[world.rank::world.size]
    losses = [float(sess.run({"x": x[i:i + eval_batch], "y": y[i:i + eval_batch]})["loss"]) for i in starts]
    total, count = world.mean([math.fsum(losses), len(losses)])
    return gc.text.bits_per_char(float(total / count))


def generate_text(sess, state_from, tok, prompt, n, context, temperature, seed):
    """``n`` characters continuing ``prompt``: the generation plan runs once per character on
    the last ``context`` characters (right-padded: the model is causal, so the padding after
    ``pos`` does not change the logits read at ``pos``)."""
    sess.load_state_dict(state_from.state_dict())
    rng = np.random.default_rng(seed)
    ids = list(tok.encode(prompt)) or [0]
    window = np.zeros((1, context), np.int64)
    temp = np.float32(temperature)
    out = []
    for _ in range(n):
        recent = ids[-context:]
        window[0, :len(recent)] = recent
        window[0, len(recent):] = 0
        r = sess.run({"x": window, "pos": np.array([len(recent) - 1], np.int64), "temperature": temp})
        nxt = int(gc.text.sample_from_topk(r["next:0"][0], r["next:1"][0], rng))
        ids.append(nxt)
        out.append(nxt)
    return tok.decode(np.array(out, np.int64))


def _progress(total, enabled):
    if not enabled:   # also on every rank but 0
        return None
    try:
        from tqdm import tqdm
    except ImportError:   # tqdm is a dependency; train without a bar if it is missing
        return None
    return tqdm(total=total, desc="training", unit="step", disable=None, dynamic_ncols=True)


def run(title, model_fn, configs, argv=None):
    """The whole example: returns a dict of the figures (also printed)."""
    args, cfg = parse_args(title, configs, argv)
    world = dp_common.World(args.data_parallel)
    say = world.print
    out_dir = world.output_dir(args.out, "graphc-lm-")
    tok, train_ids, val_ids = load_text(cfg, args.seed)
    baseline = unigram_bits(train_ids, val_ids, cfg["vocab"])
    say(f"corpus: {len(train_ids):,} training and {len(val_ids):,} validation characters of the standard "
          f"library's .py files; unigram baseline {baseline:.3f} bits/char")

    gc.nn.manual_seed(args.seed)
    graph = build_graph(model_fn(cfg), cfg, args.top_k)
    model_path = os.path.join(out_dir, "model.pb")
    if world.root:
        graph.save(model_path)
    world.barrier()
    train_plan, eval_plan, gen_plan = compile_plans(model_path, cfg, out_dir, world, args.data_parallel)
    # data-parallel: the training Session joins the ranks (same plan on each, rank 0's weights)
    train = gc.Session(train_plan, threads=args.threads)
    evaluate = gc.Session(eval_plan, threads=args.threads)
    gen = gc.Session(gen_plan, threads=args.threads)

    windows = gc.text.lm_windows(val_ids, cfg["context"], max_windows=cfg["val_windows"])
    checkpoint = os.path.join(out_dir, "checkpoint.npz")
    progress_file = os.path.join(out_dir, "checkpoint.json")
    done = 0
    if args.resume and os.path.exists(checkpoint):
        train.load_checkpoint(checkpoint)      # weights and the optimizer's moments
        with open(progress_file) as f:
            done = int(json.load(f)["steps_done"])
        say(f"resumed from {checkpoint} after step {done}")

    def save(steps_done):
        train.save_checkpoint(checkpoint)      # data-parallel: rank 0 writes, the others wait
        if world.root:
            gc.fileio.atomic_write(progress_file, json.dumps({"steps_done": steps_done}).encode())

    start_bits = validation_bits(evaluate, train, windows, cfg["eval_batch"], world)
    losses = []
    loss = np.empty((), np.float32)
    bar = _progress(cfg["steps"] - done, world.progress(not args.no_progress))
    # Every rank draws the same global batch of batch × N windows and trains on its own rows.
    rows = slice(world.rank * cfg["batch"], (world.rank + 1) * cfg["batch"])
    batches = gc.text.lm_batches(train_ids, cfg["batch"] * world.size, cfg["context"], seed=args.seed,
                                 steps=cfg["steps"])
    t0 = time.perf_counter()
    for step, (xb, yb) in enumerate(batches):
        if step < done:            # resuming: the same batch order, the first `done` already seen
            continue
        train.run({"x": xb[rows], "y": yb[rows]}, out={"loss": loss})
        losses.append(float(loss))
        if bar is not None:
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        if cfg["checkpoint_every"] and (step + 1) % cfg["checkpoint_every"] == 0:
            save(step + 1)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    save(cfg["steps"])
    bits = validation_bits(evaluate, train, windows, cfg["eval_batch"], world)
    losses = list(world.mean(losses))      # each rank's loss is over its rows: the global batch's loss
    k = max(1, min(10, len(losses) // 5))
    first = float(np.mean(losses[:k])) if losses else math.nan
    last = float(np.mean(losses[-k:])) if losses else math.nan
    say(f"trained {len(losses)} steps in {seconds:.1f} s ({1e3 * seconds / max(len(losses), 1):.1f} ms/step); "
        f"training loss {first:.3f} -> {last:.3f} nats/char")
    say(f"validation: {start_bits:.3f} -> {bits:.3f} bits/char (unigram baseline {baseline:.3f})")
    text = None
    if world.root:   # every rank holds the same weights: rank 0 samples, the others get its text
        text = generate_text(gen, train, tok, args.prompt, args.tokens, cfg["context"], args.temperature, args.seed)
    text = world.broadcast(text)
    say(f"--- {args.tokens} characters after {args.prompt!r} (temperature {args.temperature:g}, "
        f"top-k {args.top_k}, seed {args.seed}):")
    say(args.prompt + text)
    say("---")
    say(f"files: {out_dir} (model.pb, train.plan, eval.plan, generate.plan, checkpoint.npz)")
    return {"config": args.config, "first_loss": first, "last_loss": last, "val_bits": bits, "start_bits": start_bits,
            "baseline_bits": baseline, "text": text, "steps": len(losses),
            "ms_per_step": 1e3 * seconds / max(len(losses), 1)}


def exit_code(result):
    """0 when training worked: the training loss fell, and (beyond the tiny configuration,
    which only has to learn something) the validation text is predicted better than by the
    unigram baseline."""
    ok = result["last_loss"] < result["first_loss"]
    if result["config"] != "tiny":
        ok = ok and result["val_bits"] < result["baseline_bits"]
    return 0 if ok else 1
