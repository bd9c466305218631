"""``gc.nn``: layers with PyTorch's constructor arguments, parameter names and default
initialisation, so that a PyTorch model's weights load into the graphc twin in one call.

A layer is a callable object.  The first time it is called on a Tensor of a graph it creates
its variables in that graph, under a name scope: a layer stored as attribute ``conv1`` of a
block stored as ``layer1`` of the model gets ``layer1/conv1/weight``, which is PyTorch's
state-dict key ``layer1.conv1.weight`` with ``.`` → ``/``.  Calling the same layer object
again in the same graph reuses its variables (weight sharing); calling it in another graph
creates them there.  The model (the outermost layer) adds no scope of its own unless it is
given ``name=...``; wrap the call in ``gc.name_scope`` to put a whole model under a prefix.

Example::

    import graphc as gc
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 1, 8, 8))
        y = gc.placeholder("y", (None,), dtype="int64")
        model = gc.nn.Sequential(
            gc.nn.Conv2d(1, 16, 3, padding=1, bias=False), gc.nn.BatchNorm2d(16), gc.nn.ReLU(),
            gc.nn.ResidualBlock(16, 32, stride=2),
            gc.nn.AdaptiveAvgPool2d(1), gc.nn.Flatten(), gc.nn.Linear(32, 10))
        logits = model(x)                       # variables 0/weight, 1/running_mean, ..., 5/bias
        loss = gc.softmax_cross_entropy(logits, y)
        gc.optim.SGD(lr=0.1, momentum=0.9).minimize(loss)
    # later: sess.load_state_dict(torch_model.state_dict())

Initialisation follows PyTorch: ``Linear`` and ``Conv2d`` weights U(-b, b) with
b = 1/√fan_in (``kaiming_uniform_(a=√5)``), biases U(-b, b) with the same bound;
``BatchNorm2d`` weight 1, bias 0, running mean 0, running variance 1; ``Embedding`` weight
N(0, 1); ``LayerNorm`` weight 1, bias 0.  The draws are seeded
from ``(seed, variable name)`` (:func:`manual_seed`, default 0), so a model built twice,
in any order, starts from the same values; they are not PyTorch's draws.

Training or inference is not a property of a layer: ``BatchNorm2d`` and ``Dropout`` build
``gc.batch_norm`` and ``gc.dropout``, which behave as in ``model.train()`` in a training plan
and as in ``model.eval()`` in an inference plan compiled from the same .pb.
"""

from graphc.nn.layers import (
                              GELU,
                              AdaptiveAvgPool2d,
                              AvgPool2d,
                              BatchNorm2d,
                              Conv2d,
                              ConvTranspose2d,
                              Dropout,
                              Embedding,
                              Flatten,
                              LayerNorm,
                              LeakyReLU,
                              Linear,
                              MaxPool2d,
                              ReLU,
                              ResidualBlock,
                              SiLU,
                              Softplus,
                              Upsample,
)
from graphc.nn.module import Identity, Module, Sequential, manual_seed
from graphc.nn.rnn import GRU, LSTM, GRUCell, LSTMCell
from graphc.nn.transformer import MultiheadAttention, TransformerEncoder, TransformerEncoderLayer

__all__ = [
    "Module", "Sequential", "Identity", "Linear", "Conv2d", "BatchNorm2d", "Dropout", "ReLU", "MaxPool2d",
    "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "ResidualBlock", "Embedding", "LayerNorm", "GELU", "SiLU",
    "Softplus", "manual_seed", "LSTM", "LSTMCell", "GRU", "GRUCell", "MultiheadAttention",
    "TransformerEncoderLayer", "TransformerEncoder", "ConvTranspose2d", "Upsample", "LeakyReLU",
]
