"""Train a character-level LSTM language model on the Python standard library's source with
graphc, end to end, and generate text from it.

    gc.nn (Embedding → 2-layer LSTM → Linear) → save model.pb → compile a training plan, an
    evaluation plan and a generation plan from the same .pb → train in the C++ runtime with a
    progress bar and checkpoints → validation bits per character against the unigram baseline →
    sample text with temperature and top-k, the generation plan run once per new character

Run:  python examples/train_lstm_lm.py [--config small] [--steps N] [--threads 2] [--out DIR]
      python examples/train_lstm_lm.py --config tiny        # seconds: checks the loss falls
      python examples/train_lstm_lm.py --prompt "import " --temperature 0.6 --top-k 10

The LSTM is unrolled over the context length into the graph (one input-projection GEMM per
layer, then one h·W_hh GEMM and the fused gate math per step); see docs/nn.md.
"""

import os
import sys

import graphc as gc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lm_common  # noqa: E402

CONFIGS = {
    # The README's figures: embedding 64, two layers of 256 (the benchmark's model), context 64.
    "small": dict(vocab=128, embed=64, hidden=256, layers=2, dropout=0.0, context=64, batch=32, steps=1500,
                  lr=3e-3, corpus_bytes=2_000_000, val_windows=512, eval_batch=64, checkpoint_every=500,
                  optimizer=lambda lr: gc.optim.Adam(lr)),
    "tiny": dict(vocab=128, embed=16, hidden=32, layers=2, dropout=0.0, context=16, batch=8, steps=40,
                 lr=1e-2, corpus_bytes=100_000, val_windows=64, eval_batch=32, checkpoint_every=0,
                 optimizer=lambda lr: gc.optim.Adam(lr)),
}


class CharLSTM(gc.nn.Module):
    """ids (N, T) → logits (N, T, vocab): an embedding, a stacked LSTM, a linear head."""

    def __init__(self, cfg):
        super().__init__()
        self.embed = gc.nn.Embedding(cfg["vocab"], cfg["embed"])
        self.lstm = gc.nn.LSTM(cfg["embed"], cfg["hidden"], num_layers=cfg["layers"], batch_first=True,
                               dropout=cfg["dropout"])
        self.head = gc.nn.Linear(cfg["hidden"], cfg["vocab"])

    def forward(self, x):
        out, _ = self.lstm(self.embed(x))
        return self.head(out)


def main(argv=None):
    return lm_common.run(__doc__.splitlines()[0], CharLSTM, CONFIGS, argv)


if __name__ == "__main__":
    sys.exit(lm_common.exit_code(main()))
