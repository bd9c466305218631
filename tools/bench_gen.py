"""Generative examples benchmark: graphc vs PyTorch CPU on the steps of examples/train_gan.py and
examples/train_diffusion.py (issue 13), float32, same thread count.

Timed, one row each:
  1. GAN step (train_gan.py's full config: z 32, widths 32, batch 64): one train_d run and one
     train_g run of the compiled Program in one Session, against the same networks in torch.nn
     with two Adam(2e-4, betas (0.5, 0.999)) in the same alternation: zero_grad, D's loss on the
     real batch and on G(z).detach(), backward, D step; then zero_grad, G's loss on D(G(z')),
     backward, G step.  z and z' are drawn by each framework (graphc: in the graph, Philox; torch:
     torch.randn).  PyTorch's G step also computes D's parameter gradients (the usual DCGAN loop;
     graphc's train_g differentiates only G's variables).
  2. DDPM training step (train_diffusion.py's full config: T 100, width 512, 2 blocks, batch 128):
     one run of the train entry (ε drawn in the graph) against zero_grad, the noising, the ε loss,
     backward, Adam(1e-3) step in torch (ε from torch.randn).
  3. DDPM sampling of 500 digits: T runs of the sample_step entry (train_diffusion.sample(): x
     fed, x_prev fetched), against the same T-step loop in torch under no_grad (the per-sample
     coefficients gathered by t as the graph does, z from torch.randn).
  4. conv_transpose2d forward + backward (dx, dw) of the GAN generator's layer (64->32 channels,
     4x4 -> 8x8, k4 s2 p1, batch 64): tools/bench_conv_transpose.py's graphc and torch cases.

The models are the examples' own builders (examples/ on sys.path, nothing copied); the torch
twins are written here and load graphc's initial weights (Session.state_dict(), PyTorch names).
Before timing, the first losses are checked (max error <= 1e-3 of the largest magnitude): the
in-graph noise is recomputed in numpy from (seed, rng/step) with graphc.ops.random.random_normals
and fed to the torch twin, so the GAN's first d_loss and g_loss (after one D step in each
framework) and the DDPM's first loss compare the same arithmetic; the sampling step is checked
on eps_hat and x_prev given graphc's own fetched z (and z against the numpy recomputation of the
draw).  The output says what was checked; a case that fails its check is not timed.
Medians of alternating blocks (tools/_bench_util.py); ratio = graphc / torch (< 1:
graphc faster).  ``--quick`` uses the examples' tiny configs (a few seconds, for tests).

Run:  PYTHONPATH=. python tools/bench_gen.py [--threads 2] [--repeat R] [--quick]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench_util as bu  # noqa: E402

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
SEED = 0
RTOL = 1e-3
# the GAN generator's conv_transpose2d layer: bench_conv_transpose.SHAPES' first row
CONVT = ("64->32 4x4->8x8", (64, 64, 4, 4), (64, 32, 4, 4), 2, 1)


def _examples():
    if EXAMPLES not in sys.path:
        sys.path.insert(0, EXAMPLES)
    import train_diffusion
    import train_gan
    return train_gan, train_diffusion


def _drawn(sess, seed, shape):
    """The float32 normals the next run's random_normal(seed=seed) draws, from the rng/step counter
    (the values depend on (seed, step, element index) only; graphc/ops/random.py)."""
    import numpy as np

    from graphc.ops.random import random_normals
    step = int(sess.get_variable("rng/step"))
    n = int(np.prod(shape))
    return random_normals(n, seed, step, np.float32).astype(np.float32).reshape(shape)


def _load_twin(torch, twin, sess):
    """Copy graphc's initial weights into ``twin``; only batch norm's counters may be missing."""
    state = {k: torch.from_numpy(v.copy()) for k, v in sess.state_dict().items()}
    r = twin.load_state_dict(state, strict=False)
    missing = [k for k in r.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or r.unexpected_keys:
        raise SystemExit(f"torch twin does not match graphc's variables: missing {missing}, "
                         f"unexpected {r.unexpected_keys}")


def _err(ours, theirs):
    """max |ours - theirs| / max |theirs|: elementwise relative errors would judge the values near
    zero of a large sum by their rounding alone."""
    import numpy as np
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max()) / (float(np.abs(theirs).max()) or 1.0)


def _agree(ours, theirs):
    return _err(ours, theirs) <= RTOL


# --------------------------------------------------------------------------- GAN


def torch_gan(torch, cfg):
    """The torch.nn twin of train_gan's Generator and discriminator, as children G and D."""
    nn = torch.nn
    w, zd = cfg["g_width"], cfg["z"]

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(zd, 2 * w * 4 * 4)
            self.bn0 = nn.BatchNorm2d(2 * w)
            self.up = nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1)
            self.bn1 = nn.BatchNorm2d(w)
            self.out = nn.Conv2d(w, 1, 3, padding=1)

        def forward(self, z):
            h = torch.relu(self.bn0(self.fc(z).reshape(-1, 2 * w, 4, 4)))
            h = torch.relu(self.bn1(self.up(h)))
            return torch.sigmoid(self.out(h))

    dw = cfg["d_width"]
    net = nn.Module()
    net.G = Generator()
    net.D = nn.Sequential(nn.Conv2d(1, dw, 3, padding=1), nn.LeakyReLU(0.2),
                          nn.Conv2d(dw, 2 * dw, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
                          nn.Flatten(), nn.Linear(2 * dw * 4 * 4, 1))
    return net


def gan_case(gc, torch, threads, quick):
    """(graphc step, torch step, checked note) for one GAN step."""
    import numpy as np
    train_gan, _ = _examples()
    cfg = dict(train_gan.CONFIGS["tiny" if quick else "full"])
    batch, zd = cfg["batch"], cfg["z"]
    gc.nn.manual_seed(SEED)
    graph, names = train_gan.build_graph(cfg, seed=SEED)
    prog = gc.compile(graph, entries=["train_d", "train_g"], shapes={"x": (batch, 1, 8, 8)})
    sess = gc.Session(prog, threads=threads)
    net = torch_gan(torch, cfg)
    _load_twin(torch, net, sess)
    net.train()
    F = torch.nn.functional
    opt_d = torch.optim.Adam(net.D.parameters(), lr=cfg["lr"], betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(net.G.parameters(), lr=cfg["lr"], betas=(0.5, 0.999))

    def t_step(xb, z=None, z2=None):
        opt_d.zero_grad(set_to_none=True)
        fake = net.G(torch.randn(batch, zd) if z is None else z)
        real_logits = net.D(xb)
        d_loss = F.softplus(-real_logits).mean() + F.softplus(net.D(fake.detach())).mean()
        d_real = torch.sigmoid(real_logits.detach()).mean()
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        fake_logits = net.D(net.G(torch.randn(batch, zd) if z2 is None else z2))
        g_loss = F.softplus(-fake_logits).mean()
        d_fake = torch.sigmoid(fake_logits.detach()).mean()
        g_loss.backward()
        opt_g.step()
        return float(d_loss.detach()), float(g_loss.detach()), float(d_real), float(d_fake)

    (xtr, _), _ = gc.datasets.load_digits(images=True)
    xb = np.ascontiguousarray(xtr[:batch], dtype=np.float32)
    txb = torch.from_numpy(xb)
    # the first step of each, on the same real batch and the same z, z'
    z = _drawn(sess, SEED, (batch, zd))
    d = sess.run({"x": xb}, entry="train_d")
    z2 = _drawn(sess, SEED, (batch, zd))
    g = sess.run({}, entry="train_g")
    ours = (float(d[names["d_loss"]]), float(g[names["g_loss"]]))
    theirs = t_step(txb, torch.from_numpy(z), torch.from_numpy(z2))[:2]
    ok = _agree(ours, theirs)
    check = (f"first d_loss, g_loss graphc {ours[0]:.5f}, {ours[1]:.5f} / torch {theirs[0]:.5f}, "
             f"{theirs[1]:.5f} (same x, same z recomputed from rng/step): {'agree' if ok else 'DISAGREE'}")

    def g_step():
        sess.run({"x": xb}, entry="train_d")
        sess.run({}, entry="train_g")
    what = f"GAN step (train_d + train_g), batch {batch}, z {zd}, widths {cfg['g_width']}/{cfg['d_width']}"
    return what, (g_step if ok else None), (lambda: t_step(txb)), check


# --------------------------------------------------------------------------- DDPM


def torch_denoiser(torch, cfg):
    """The torch.nn twin of train_diffusion's Denoiser, as child ``denoiser``."""
    nn = torch.nn
    T, width, F = cfg["T"], cfg["width"], torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.emb, self.fc2 = nn.Linear(width, width), nn.Embedding(T, width), nn.Linear(width, width)

        def forward(self, h, t):
            return h + self.fc2(F.silu(self.fc1(F.silu(h)) + self.emb(t)))

    class Denoiser(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.emb = nn.Linear(64, width), nn.Embedding(T, width)
            self.n_blocks = cfg["blocks"]
            for i in range(cfg["blocks"]):
                self.add_module(f"block{i}", Block())
            self.out = nn.Linear(width, 64)

        def forward(self, x, t):
            h = self.inp(x.reshape(-1, 64)) + self.emb(t)
            for i in range(self.n_blocks):
                h = getattr(self, f"block{i}")(h, t)
            return self.out(F.silu(h)).reshape(-1, 1, 8, 8)

    net = nn.Module()
    net.denoiser = Denoiser()
    return net


def ddpm_cases(gc, torch, threads, quick):
    """[(what, graphc fn, torch fn, checked note)] for the training step and the sampling."""
    import numpy as np
    _, td = _examples()
    cfg = dict(td.CONFIGS["tiny" if quick else "full"])
    T, batch, n = cfg["T"], cfg["batch"], cfg["samples"]
    gc.nn.manual_seed(SEED)
    graph, sched, names = td.build_graph(cfg, SEED)
    shapes = {"x": (batch, 1, 8, 8), "t": (batch,), "sample_step": {"x_t": (n, 1, 8, 8), "t": (n,)}}
    sess = gc.Session(gc.compile(graph, entries=["train", "sample_step"], shapes=shapes), threads=threads)
    net = torch_denoiser(torch, cfg)
    _load_twin(torch, net, sess)
    den = net.denoiser
    # the graph's float32 tables (train_diffusion._gather)
    tab = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in sched.items()}
    tab["sqrt_ab"] = torch.from_numpy(np.sqrt(sched["alpha_bar"]).astype(np.float32))
    tab["sqrt_1mab"] = torch.from_numpy(np.sqrt(1.0 - sched["alpha_bar"]).astype(np.float32))
    tab["c_x0"] = torch.from_numpy((np.sqrt(sched["alpha_bar_prev"]) * sched["beta"]
                                    / (1.0 - sched["alpha_bar"])).astype(np.float32))
    tab["c_xt"] = torch.from_numpy((np.sqrt(sched["alpha"]) * (1.0 - sched["alpha_bar_prev"])
                                    / (1.0 - sched["alpha_bar"])).astype(np.float32))
    tab["sigma"] = torch.from_numpy(sched["sigma"].astype(np.float32))

    def col(name, t):
        return tab[name][t].reshape(-1, 1, 1, 1)

    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])

    def t_train(xb, tb, eps=None):
        opt.zero_grad(set_to_none=True)
        x0 = xb * 2.0 - 1.0
        eps = torch.randn_like(x0) if eps is None else eps
        x_noisy = col("sqrt_ab", tb) * x0 + col("sqrt_1mab", tb) * eps
        err = den(x_noisy, tb) - eps
        loss = (err * err).mean()
        loss.backward()
        opt.step()
        return float(loss.detach())

    def t_update(x, ts, z):
        eps_hat = den(x, ts)
        x0 = torch.clamp((x - col("sqrt_1mab", ts) * eps_hat) / col("sqrt_ab", ts), -1.0, 1.0)
        return col("c_x0", ts) * x0 + col("c_xt", ts) * x + col("sigma", ts) * z, eps_hat

    def t_sample():
        with torch.no_grad():
            x = torch.randn(n, 1, 8, 8)
            ts = torch.empty(n, dtype=torch.int64)
            for step in reversed(range(T)):
                ts.fill_(step)
                x = t_update(x, ts, torch.randn_like(x))[0]
            return torch.clamp((x + 1.0) / 2.0, 0.0, 1.0)

    (xtr, _), _ = gc.datasets.load_digits(images=True)
    idx, tb = td.batch_of_step(0, SEED, len(xtr), batch, T)
    xb = np.ascontiguousarray(xtr[idx], dtype=np.float32)
    txb, ttb = torch.from_numpy(xb), torch.from_numpy(tb)
    checks = []
    # sampling first (no weight update yet): one sample_step at the last t, torch given graphc's z
    xs = np.random.default_rng([SEED, 0, 1]).standard_normal((n, 1, 8, 8)).astype(np.float32)
    ts = np.full(n, T - 1, np.int64)
    z_pred = _drawn(sess, SEED + 1, (n, 1, 8, 8))
    out = sess.run({"x_t": xs, "t": ts}, entry="sample_step")
    with torch.no_grad():
        x_prev, eps_hat = t_update(torch.from_numpy(xs), torch.from_numpy(ts), torch.from_numpy(out[names["z"]]))
    e_eps, e_x = _err(out[names["eps_hat"]], eps_hat.numpy()), _err(out[names["x_prev"]], x_prev.numpy())
    z_same = np.array_equal(out[names["z"]], z_pred)
    s_ok = e_eps <= RTOL and e_x <= RTOL and z_same
    checks.append(f"sample_step at t={T - 1}: eps_hat, x_prev (torch given graphc's z) max error {e_eps:.1e}, "
                  f"{e_x:.1e} of max; z {'=' if z_same else '!='} its numpy recomputation from rng/step: "
                  f"{'agree' if s_ok else 'DISAGREE'}")
    eps = _drawn(sess, SEED, (batch, 1, 8, 8))
    ours = float(sess.run({"x": xb, "t": tb}, entry="train")[names["loss"]])
    theirs = t_train(txb, ttb, torch.from_numpy(eps))
    t_ok = _agree(ours, theirs)
    checks.append(f"first DDPM loss graphc {ours:.5f} / torch {theirs:.5f} (same x, t, eps recomputed from "
                  f"rng/step): {'agree' if t_ok else 'DISAGREE'}")

    def g_train():
        sess.run({"x": xb, "t": tb}, entry="train")

    def g_sample():
        return td.sample(sess, names, T, n, SEED)

    return [(f"DDPM train step, batch {batch}, width {cfg['width']}, {cfg['blocks']} blocks",
             g_train if t_ok else None, lambda: t_train(txb, ttb), checks[1]),
            (f"DDPM sampling, {n} digits x {T} sample_step runs", g_sample if s_ok else None, t_sample, checks[0])]


# --------------------------------------------------------------------------- conv_transpose2d


def convt_case(gc, torch, threads):
    import numpy as np
    from bench_conv_transpose import graphc_case, torch_case
    name, xs, ws, stride, padding = CONVT
    ho, wo = ((d - 1) * stride - 2 * padding + k for d, k in zip(xs[2:], ws[2:]))
    rng = np.random.default_rng(0)
    arrays = (rng.standard_normal(xs).astype(np.float32), (rng.standard_normal(ws) * 0.1).astype(np.float32),
              rng.standard_normal((xs[0], ws[1], ho, wo)).astype(np.float32))
    run, results = graphc_case(gc, threads, True, xs, ws, stride, padding, arrays)
    tfn = torch_case(torch, True, stride, padding, arrays)
    run()
    errs = [float(np.abs(o - w.numpy()).max()) / (float(np.abs(w.numpy()).max()) or 1.0)
            for o, w in zip(results, tfn())]
    ok = max(errs) <= RTOL
    check = (f"conv_transpose2d y, dx, dw: max error {max(errs):.1e} of max (<= {RTOL:g}): "
             f"{'agree' if ok else 'DISAGREE'}")
    return f"conv_transpose2d fwd+bwd {name}, batch {xs[0]}", (run if ok else None), tfn, check


# --------------------------------------------------------------------------- measure / main


def measure(threads, repeat, quick):
    """Time every case; returns [{what, graphc_ms, torch_ms, ratio, checked}] (graphc_ms None when
    the check failed: a mismatch is reported, not timed)."""
    import torch

    import graphc as gc
    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    cases = [gan_case(gc, torch, threads, quick)] + ddpm_cases(gc, torch, threads, quick) + \
        [convt_case(gc, torch, threads)]
    rows = []
    for what, g_fn, t_fn, check in cases:
        slow = what.startswith("DDPM sampling")
        fns = [f for f in (g_fn, t_fn) if f is not None]
        # a sampling run lasts ~T steps: fewer samples, shorter blocks
        kw = dict(repeat=max(3, repeat // 3), warmup=1, block=3) if slow and not quick else \
            dict(repeat=repeat, min_time=0.0 if slow else 0.02)
        times = bu.median_times(fns, **kw)
        g_s = times[0] if g_fn is not None else None
        t_s = times[-1]
        rows.append({"what": what, "graphc_ms": None if g_s is None else g_s * 1e3, "torch_ms": t_s * 1e3,
                     "ratio": None if g_s is None else g_s / t_s, "checked": check})
    return rows


def main(argv=None):
    args = bu.parse_args(__doc__.splitlines()[0], argv=argv)
    bu.pin_threads(args.threads)
    import numpy as np

    import graphc as gc
    torch, why = bu.try_import("torch")
    repeat = args.repeat or (3 if args.quick else 21)
    print(f"machine: {bu.machine()}")
    print(f"threads: {args.threads} for every framework; graphc {gc.__version__}, numpy {np.__version__}, "
          f"torch {torch.__version__ if torch else why}")
    print(f"repeats: {repeat} (sampling: {max(3, repeat // 3)}); medians, {bu.SAMPLING}")
    print(bu.load_note())
    print(f"configs: the examples' {'tiny (--quick)' if args.quick else 'full'} configs")
    print()
    if torch is None:
        print("PyTorch is required for this comparison (the torch twins load graphc's initial weights)")
        return 1
    rows = measure(args.threads, repeat, args.quick)
    table = [[r["what"], "not timed (check failed)" if r["graphc_ms"] is None else bu.fmt_ms(r["graphc_ms"] / 1e3),
              bu.fmt_ms(r["torch_ms"] / 1e3), "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"] for r in rows]
    bu.print_table(f"generative examples, graphc vs PyTorch, threads={args.threads}",
                   ["case", "graphc", "torch", "graphc/torch"], table)
    print()
    print(f"checked before timing (max |graphc - torch| <= {RTOL:g} max |torch|):")
    for r in rows:
        print(f"  {r['checked']}")
    print(bu.load_note().replace("at start", "at end"))
    return 0 if all(r["graphc_ms"] is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
