"""The parts shared by the generative examples (examples/train_gan.py, examples/train_diffusion.py):
the digit classifier that scores generated samples, the score and its bar, and a progress bar.

The classifier is the ResNet of examples/train_cnn.py (its ``build_graph``, not a copy), trained
by that example's ``main()`` into a cache folder the first time it is needed (about a minute on
2 cores), then compiled as an inference plan from the same graph with the trained checkpoint::

    clf = gen_common.classifier()                 # trains once into ~/.cache/graphc/digits_cnn
    probs = clf(images)                           # images (N, 1, 8, 8) float32 in [0, 1] -> (N, 10)
    s = gen_common.score(probs)                   # mean top-class probability, classes covered
    print(gen_common.format_score(s)); s["passed"]

The issue's bar for 500 generated digits: a mean top-class probability >= 0.8 (the samples look
like digits to the classifier) and at least 8 of the 10 classes as some sample's top class (the
generator covers the modes rather than drawing one digit well).
"""

import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

import graphc as gc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_cnn  # noqa: E402

MEAN_TOP_PROB_TARGET = 0.8
CLASSES_TARGET = 8
N_SAMPLES = 500                      # samples scored at the end of a full run
CLASSIFIER_BATCH = 250               # the inference plan's fixed batch; the last chunk is padded

# train_cnn.main() arguments of the two classifiers: the full one (98-99 % test accuracy,
# about a minute on 2 cores) and a quick one for tests (a narrow net on 512 images, seconds;
# its probabilities are rough, fit to check that scoring runs, not to judge samples).
FULL_ARGS = ["--epochs", "15"]
QUICK_ARGS = ["--quick", "--epochs", "8"]
QUICK_WIDTH = 8                      # train_cnn's --quick width
FULL_WIDTH = 32                      # train_cnn's default --width


def cache_root():
    """$GRAPHC_CACHE, or ~/.cache/graphc."""
    return os.environ.get("GRAPHC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "graphc")


def _train_into(folder, quick, threads):
    """Train the classifier with train_cnn.main() into a fresh folder next to ``folder`` and move
    it into place, so that a crash or a concurrent process never leaves half a cache; a folder
    another process moved there first wins."""
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(folder) + ".", suffix=".tmp", dir=parent)
    try:
        argv = (QUICK_ARGS if quick else FULL_ARGS) + ["--out", tmp, "--no-progress", "--seed", "0"]
        if threads is not None:
            argv += ["--threads", str(threads)]
        t0 = time.perf_counter()
        print(f"training the digit classifier for scoring ({'quick' if quick else 'full'}) into {folder} ...",
              flush=True)
        result = train_cnn.main(argv)
        info = {"quick": bool(quick), "width": QUICK_WIDTH if quick else FULL_WIDTH,
                "test_accuracy": result["accuracy"], "train_seconds": round(time.perf_counter() - t0, 1)}
        with open(os.path.join(tmp, "classifier.json"), "w") as f:
            json.dump(info, f)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not os.path.exists(os.path.join(folder, "classifier.json")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Classifier:
    """``probs = clf(images)``: class probabilities (N, 10) float32 of images (N, 1, 8, 8) in the
    digits' scale [0, 1], from the inference plan of train_cnn's ResNet with trained weights."""

    def __init__(self, folder, threads=None):
        with open(os.path.join(folder, "classifier.json")) as f:
            self.info = json.load(f)
        graph, self.logits_name, _ = train_cnn.build_graph(int(self.info["width"]), 0.05)
        plan = gc.compile(graph, shapes={"x": (CLASSIFIER_BATCH, 1, 8, 8)}, fetches=[self.logits_name], train=False)
        self.session = gc.Session(plan, threads=threads)
        missing, _ = self.session.load_checkpoint(os.path.join(folder, "checkpoint.npz"), strict=False)
        if missing:
            raise gc.errors.CheckpointError(f"the classifier checkpoint in {folder} lacks the variables {missing}: "
                                            "delete the folder to train it again")
        self.folder = folder
        self.test_accuracy = float(self.info["test_accuracy"])

    def __call__(self, images):
        x = np.asarray(images, np.float32)
        if x.ndim != 4 or x.shape[1:] != (1, 8, 8):
            raise gc.errors.FeedError(f"classifier expects images of shape (N, 1, 8, 8), got {x.shape}")
        out = np.empty((len(x), 10), np.float32)
        chunk = np.zeros((CLASSIFIER_BATCH, 1, 8, 8), np.float32)
        for start in range(0, len(x), CLASSIFIER_BATCH):
            part = x[start:start + CLASSIFIER_BATCH]
            chunk[:len(part)] = part
            chunk[len(part):] = 0.0            # batch norm uses running statistics: padding changes nothing
            logits = self.session.run({"x": chunk})[self.logits_name][:len(part)].astype(np.float64)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            out[start:start + len(part)] = e / e.sum(axis=1, keepdims=True)
        return out


def classifier(cache_dir=None, threads=None, quick=False):
    """The digit classifier as a callable ``probs = clf(images)`` (see :class:`Classifier`).

    ``cache_dir`` holds its model, checkpoint and classifier.json (default
    $GRAPHC_CACHE/digits_cnn, or ~/.cache/graphc/digits_cnn; ``..._quick`` for ``quick``); it is
    trained there with examples/train_cnn.py when the folder has no classifier yet.
    ``quick=True`` trains a rough classifier in seconds, for tests."""
    folder = cache_dir or os.path.join(cache_root(), "digits_cnn_quick" if quick else "digits_cnn")
    if not os.path.exists(os.path.join(folder, "classifier.json")):
        _train_into(folder, quick, threads)
    return Classifier(folder, threads=threads)


def score(probs):
    """The figures of samples' class probabilities ``probs`` (N, 10): ``mean_top_prob`` (the mean
    over samples of the top class's probability), ``classes`` (how many classes are some sample's
    top class), ``histogram`` (samples per top class, a list of 10), ``n`` and ``passed`` (both
    bars met: mean_top_prob >= 0.8 and classes >= 8)."""
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or p.shape[1] != 10 or len(p) == 0:
        raise ValueError(f"score expects probabilities of shape (N, 10) with N >= 1, got {p.shape}")
    top = np.argmax(p, axis=1)
    histogram = np.bincount(top, minlength=10)
    mean_top = float(np.mean(np.max(p, axis=1)))
    classes = int(np.count_nonzero(histogram))
    return {"mean_top_prob": mean_top, "classes": classes, "histogram": [int(c) for c in histogram],
            "n": int(len(p)), "passed": bool(mean_top >= MEAN_TOP_PROB_TARGET and classes >= CLASSES_TARGET)}


def format_score(s):
    """One line of a score: the figures, the bar and whether it is met."""
    return (f"{s['n']} samples: mean top-class probability {s['mean_top_prob']:.3f} (bar >= {MEAN_TOP_PROB_TARGET}), "
            f"{s['classes']} of 10 classes (bar >= {CLASSES_TARGET}), samples per class {s['histogram']}: "
            f"{'PASSED' if s['passed'] else 'MISSED'}")


class Progress:
    """A tqdm bar over ``total`` steps with the latest figures as its postfix, or nothing when
    ``enabled`` is false or tqdm is missing (the loop is the same either way)."""

    def __init__(self, total, desc, enabled=True, initial=0):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:   # tqdm is a dependency of graphc; train without a bar if it is missing
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", disable=None,
                                dynamic_ncols=True)

    def update(self, **figures):
        if self.bar is not None:
            self.bar.set_postfix({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in figures.items()},
                                 refresh=False)
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()
