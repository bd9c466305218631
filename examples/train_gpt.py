"""Train a small GPT-style character language model on the Python standard library's source
with graphc, end to end, and generate text from it.

    gc.nn (token + position Embedding → pre-norm TransformerEncoderLayers with a causal mask →
    LayerNorm → Linear) → save model.pb → compile a training plan, an evaluation plan and a
    generation plan from the same .pb → train with AdamW in the C++ runtime with a progress bar
    and checkpoints → validation bits per character against the unigram baseline → sample text
    with temperature and top-k, the generation plan run once per new character

Run:  python examples/train_gpt.py [--config small] [--steps N] [--threads 2] [--out DIR]
      python examples/train_gpt.py --config tiny        # seconds: checks the loss falls
      python examples/train_gpt.py --prompt "class " --temperature 0.6 --top-k 10

Attention is gc.scaled_dot_product_attention's fused kernel (online softmax: no (T, T) matrix
is stored); see docs/attention.md.
"""

import os
import sys

import numpy as np

import graphc as gc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lm_common  # noqa: E402

CONFIGS = {
    # The README's figures: the benchmark's model (4 pre-norm layers, width 128, 4 heads, context 64).
    "small": dict(vocab=128, width=128, heads=4, layers=4, ffn=512, dropout=0.0, context=64, batch=32, steps=1500,
                  lr=1e-3, corpus_bytes=2_000_000, val_windows=512, eval_batch=64, checkpoint_every=500,
                  optimizer=lambda lr: gc.optim.AdamW(lr, weight_decay=0.01)),
    "tiny": dict(vocab=128, width=32, heads=2, layers=1, ffn=64, dropout=0.0, context=16, batch=8, steps=40,
                 lr=1e-2, corpus_bytes=100_000, val_windows=64, eval_batch=32, checkpoint_every=0,
                 optimizer=lambda lr: gc.optim.AdamW(lr, weight_decay=0.01)),
}


class GPT(gc.nn.Module):
    """ids (N, T) → logits (N, T, vocab): token and learned position embeddings, a stack of
    pre-norm causal Transformer layers with GELU, a final LayerNorm and a linear head."""

    def __init__(self, cfg):
        super().__init__()
        self.tok = gc.nn.Embedding(cfg["vocab"], cfg["width"])
        self.pos = gc.nn.Embedding(cfg["context"], cfg["width"])
        layer = gc.nn.TransformerEncoderLayer(cfg["width"], cfg["heads"], dim_feedforward=cfg["ffn"],
                                              dropout=cfg["dropout"], activation="gelu", batch_first=True,
                                              norm_first=True)
        self.blocks = gc.nn.TransformerEncoder(layer, cfg["layers"])
        self.norm = gc.nn.LayerNorm(cfg["width"])
        self.head = gc.nn.Linear(cfg["width"], cfg["vocab"])

    def forward(self, x):
        positions = gc.constant(np.arange(x.shape[1], dtype=np.int64))
        h = self.tok(x) + self.pos(positions)
        return self.head(self.norm(self.blocks(h, is_causal=True)))


def main(argv=None):
    return lm_common.run(__doc__.splitlines()[0], GPT, CONFIGS, argv)


if __name__ == "__main__":
    sys.exit(lm_common.exit_code(main()))
