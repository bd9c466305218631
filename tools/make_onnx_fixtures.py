"""Export the PyTorch fixtures of tests/test_onnx_torch.py: small seeded torch models as ONNX
files, with torch's outputs for fixed seeded inputs, committed under tests/data/onnx/.

CI has no torch: the tests import these files and compare graphc's outputs with the stored
torch outputs.  Rerun this script (torch and onnxscript needed) only to change the fixtures:

    PYTHONPATH=. python tools/make_onnx_fixtures.py [--out tests/data/onnx] [--only NAME,...]

For each fixture NAME it writes
  * NAME.onnx  the model, exported by ``torch.onnx.export`` (the default dynamo exporter,
               except where FIXTURES says ``dynamo=False``), weights embedded;
  * NAME.npz   ``in:<onnx input name>`` the seeded inputs and ``out:<onnx output name>``
               torch's outputs for them (float32 as torch computed them, eval mode);
``resnet.npz`` also holds ``train:loss``, torch's losses over TRAIN_STEPS SGD steps (lr
TRAIN_LR, momentum TRAIN_MOMENTUM, mean cross-entropy, eval mode) on the first TRAIN_BATCH
digits training images, which the imported model's training in graphc must reproduce; and
one manifest.json: per fixture the torch/onnx versions, the exporter, the opset, the
ONNX op types used, the input/output names and shapes.

The models (all in eval mode, weights and batch-norm statistics seeded):
  * ``mlp``        the digits MLP 64-128-10 (examples/train_digits.py's shape), dynamo.
  * ``mlp_legacy`` the same MLP on 1x8x8 images, flattened by ``x.view(x.size(0), -1)``,
                   exported by the TorchScript exporter (``dynamo=False``) with a dynamic batch
                   axis: the ONNX file carries a symbolic dim and a Shape/Gather/Concat/Reshape
                   chain computing the flattened shape.
  * ``resnet``     examples/train_cnn.py's ResNet for 1x8x8 digits (conv-bn-relu stem, a
                   residual block at 8x8, one at 4x4 with twice the channels, global average
                   pooling, linear), width 16 so the file stays small; dynamo, with a dynamic
                   batch dim (torch.export.Dim), so the imported model trains on any batch.
  * ``transformer`` nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64,
                   batch_first=True, activation="gelu"), eval; dynamo.
  * ``lstm``       nn.LSTM(8, 16, batch_first=True) + a Linear head on every step; dynamo.
  * ``gru``        nn.GRU(8, 16, batch_first=True) + a Linear head on the last step; dynamo.
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "onnx")
RESNET_WIDTH = 16
# The ResNet's recorded training curve (NAME.npz "train:loss"): SGD on one fixed digits batch.
TRAIN_STEPS, TRAIN_LR, TRAIN_MOMENTUM, TRAIN_BATCH = 20, 0.02, 0.9, 64


def _seed_batchnorm(torch, model, generator):
    """Random affine parameters for every BatchNorm and running statistics calibrated on 256
    digits training images (a cumulative average over them in train mode), as a trained model
    would hold: the exported eval-mode normalisation is then non-trivial (fresh BN is the
    identity) and keeps the activations O(1), so the imported model also trains stably."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not bns:
        return
    for m in bns:
        n = m.num_features
        with torch.no_grad():
            m.weight.copy_(1.0 + 0.2 * torch.randn(n, generator=generator))
            m.bias.copy_(0.1 * torch.randn(n, generator=generator))
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(_digits_images(256, train=True)))
    for m in bns:
        m.momentum = 0.1


def fold_batchnorm(torch, model):
    """A copy of the ResNet with every eval-mode BatchNorm folded into the conv before it
    (torch.nn.utils.fusion.fuse_conv_bn_eval), as the dynamo exporter writes it: the same
    function, parametrized as the ONNX file is (conv weights and biases only)."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval
    model = copy.deepcopy(model).eval()
    model[0], model[1] = fuse_conv_bn_eval(model[0], model[1]), torch.nn.Identity()
    for block in (model[3], model[4]):
        block.conv1, block.bn1 = fuse_conv_bn_eval(block.conv1, block.bn1), torch.nn.Identity()
        block.conv2, block.bn2 = fuse_conv_bn_eval(block.conv2, block.bn2), torch.nn.Identity()
        if block.downsample is not None:
            ds = block.downsample
            ds[0], ds[1] = fuse_conv_bn_eval(ds[0], ds[1]), torch.nn.Identity()
    for p in model.parameters():  # a folded bias of a bias=False conv comes back frozen
        p.requires_grad_(True)
    return model


def train_losses(model, x, y, steps=TRAIN_STEPS, lr=TRAIN_LR, momentum=TRAIN_MOMENTUM):
    """torch's training curve: the losses of ``steps`` SGD steps of mean cross-entropy on the
    fixed batch (x, y), each loss before its update, of the ResNet as exported (eval mode, batch
    norm folded into the convs: the parameters are the ONNX file's initializers).  Trains a copy."""
    import torch
    model = fold_batchnorm(torch, model)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses, dtype=np.float32)


def mlp_model(torch, images=False):
    """The digits MLP 64-128-10; with ``images`` it takes (N, 1, 8, 8) and flattens with
    ``x.view(x.size(0), -1)`` (the idiom that exports a shape computation)."""
    nn = torch.nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(64, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            if images:
                x = x.view(x.size(0), -1)
            return self.fc2(torch.relu(self.fc1(x)))

    return MLP()


def resnet_model(torch, width=RESNET_WIDTH):
    """examples/train_cnn.py's build_model in torch (dropout left out: eval mode drops it)."""
    import _bench_util as bu
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        bu.torch_basic_block(torch, width, width, 1),
        bu.torch_basic_block(torch, width, 2 * width, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(2 * width, 10))


def transformer_model(torch):
    return torch.nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.1,
                                            activation="gelu", batch_first=True)


def rnn_model(torch, cell):
    """An LSTM or GRU (8 -> 16, batch first) with a Linear(16, 4) head: on every step for the
    LSTM, on the last step for the GRU."""
    nn = torch.nn

    class RNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(8, 16, batch_first=True)
            self.head = nn.Linear(16, 4)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out if cell == "lstm" else out[:, -1])

    return RNN()


def _digits_images(n, train=False):
    """The first n test digits (``train``: the last n training digits) as (n, 1, 8, 8) float32
    in [0, 1] (graphc's shipped data)."""
    import graphc as gc
    (xtr, _), (xte, _) = gc.datasets.load_digits(images=True)
    return np.ascontiguousarray(xtr[-n:] if train else xte[:n], dtype=np.float32)


def training_batch():
    """The fixed batch the ResNet's training curve is recorded on: the first TRAIN_BATCH
    digits training images and labels (int64)."""
    import graphc as gc
    (xtr, ytr), _ = gc.datasets.load_digits(images=True)
    return (np.ascontiguousarray(xtr[:TRAIN_BATCH], dtype=np.float32),
            np.ascontiguousarray(ytr[:TRAIN_BATCH], dtype=np.int64))


# name -> (builder(torch), inputs(rng) -> {input name: array}, export options)
FIXTURES = {
    "mlp": (lambda torch: mlp_model(torch),
            lambda rng: {"x": _digits_images(5).reshape(5, 64)}, {}),
    "mlp_legacy": (lambda torch: mlp_model(torch, images=True),
                   lambda rng: {"x": _digits_images(3)},
                   {"dynamo": False, "dynamic_batch": True}),
    "resnet": (lambda torch: resnet_model(torch),
               lambda rng: {"x": _digits_images(4)}, {"dynamic_batch": True}),
    "transformer": (transformer_model,
                    lambda rng: {"x": rng.standard_normal((2, 5, 32)).astype(np.float32)}, {}),
    "lstm": (lambda torch: rnn_model(torch, "lstm"),
             lambda rng: {"x": rng.standard_normal((3, 6, 8)).astype(np.float32)}, {}),
    "gru": (lambda torch: rnn_model(torch, "gru"),
            lambda rng: {"x": rng.standard_normal((3, 6, 8)).astype(np.float32)}, {}),
}


def build(name, seed=0):
    """(torch module in eval mode, {input name: np array}, export options) of fixture ``name``,
    seeded: the same seed gives the same weights and inputs."""
    import torch
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    make_model, make_inputs, options = FIXTURES[name]
    torch.manual_seed(seed)
    model = make_model(torch)
    _seed_batchnorm(torch, model, torch.Generator().manual_seed(seed + 1))
    model.eval()
    inputs = make_inputs(np.random.default_rng(seed))
    return model, inputs, dict(options)


def torch_outputs(model, inputs):
    """torch's outputs (a list of float32 arrays) of ``model`` on ``inputs`` (in order)."""
    import torch
    with torch.no_grad():
        out = model(*[torch.from_numpy(v) for v in inputs.values()])
    outs = out if isinstance(out, (tuple, list)) else [out]
    return [o.detach().numpy().astype(np.float32) for o in outs]


def export(model, inputs, options, path):
    """torch.onnx.export ``model`` to ``path`` (weights embedded); returns the ModelProto."""
    import onnx
    import torch
    args = tuple(torch.from_numpy(v) for v in inputs.values())
    dynamic = options.get("dynamic_batch", False)
    kwargs = dict(input_names=list(inputs), output_names=["y"])
    with torch.no_grad():
        if options.get("dynamo", True):
            if dynamic:
                kwargs["dynamic_shapes"] = tuple({0: torch.export.Dim("batch")} for _ in args)
            program = torch.onnx.export(model, args, dynamo=True, **kwargs)
            program.save(path, external_data=False)
        else:
            if dynamic:
                kwargs["dynamic_axes"] = {n: {0: "batch"} for n in kwargs["input_names"] + kwargs["output_names"]}
            torch.onnx.export(model, args, path, dynamo=False, **kwargs)
    return onnx.load(path)


def make(name, out_dir, seed=0):
    """Export fixture ``name`` into out_dir (NAME.onnx, NAME.npz); returns its manifest entry."""
    import onnx
    import torch
    model, inputs, options = build(name, seed)
    path = os.path.join(out_dir, f"{name}.onnx")
    proto = export(model, inputs, options, path)
    outs = torch_outputs(model, inputs)
    in_names = [i.name for i in proto.graph.input]
    initializers = {t.name for t in proto.graph.initializer}
    in_names = [n for n in in_names if n not in initializers]
    out_names = [o.name for o in proto.graph.output]
    if in_names != list(inputs) or len(out_names) != len(outs):
        raise RuntimeError(f"{name}: exported inputs {in_names} / outputs {out_names} do not match the "
                           f"model's inputs {list(inputs)} / {len(outs)} outputs")
    arrays = {f"in:{k}": v for k, v in inputs.items()}
    arrays.update({f"out:{k}": v for k, v in zip(out_names, outs)})
    if name == "resnet":
        arrays["train:loss"] = train_losses(model, *training_batch())
    np.savez(os.path.join(out_dir, f"{name}.npz"), **arrays)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "torch": torch.__version__, "onnx": onnx.__version__,
        "exporter": "dynamo" if options.get("dynamo", True) else "torchscript",
        "opset": opset, "seed": seed, "dynamic_batch": bool(options.get("dynamic_batch", False)),
        "ops": sorted({n.op_type for n in proto.graph.node}),
        "inputs": {k: list(v.shape) for k, v in inputs.items()},
        "outputs": {k: list(v.shape) for k, v in zip(out_names, outs)},
        "bytes": os.path.getsize(path),
        **({"train": {"steps": TRAIN_STEPS, "lr": TRAIN_LR, "momentum": TRAIN_MOMENTUM, "batch": TRAIN_BATCH,
                      "loss": "mean softmax cross-entropy", "data": "the first `batch` digits training images"}}
           if name == "resnet" else {}),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder for the fixtures (default %(default)s)")
    parser.add_argument("--only", default=None, help="comma-separated fixture names (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = list(FIXTURES) if args.only is None else args.only.split(",")
    unknown = [n for n in names if n not in FIXTURES]
    if unknown:
        parser.error(f"unknown fixtures {unknown}; known: {list(FIXTURES)}")
    os.makedirs(args.out, exist_ok=True)
    manifest_path = os.path.join(args.out, "manifest.json")
    manifest = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    for name in names:
        manifest[name] = make(name, args.out, args.seed)
        entry = manifest[name]
        print(f"{name}: {entry['bytes']} bytes, opset {entry['opset']}, {entry['exporter']}, ops {entry['ops']}")
    with open(manifest_path, "w") as f:
        json.dump(dict(sorted(manifest.items())), f, indent=1, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
