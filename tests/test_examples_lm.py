"""examples/train_gpt.py and examples/train_lstm_lm.py in their tiny configuration: the .pb →
three plans → training → bits per character → sampling path works, the loss falls, sampling
returns the requested number of characters and is deterministic for a seed, and --resume
continues exactly where the checkpoint left off."""
import importlib.util
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = ("train_gpt", "train_lstm_lm")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(name, out, *extra):
    return _load(name).main(["--config", "tiny", "--out", str(out), "--no-progress", "--threads", "1", *extra])


@pytest.mark.parametrize("name", EXAMPLES)
def test_tiny_config_trains_and_samples_deterministically(name, tmp_path, capsys):
    a = _run(name, tmp_path / "a", "--tokens", "37", "--seed", "3")
    assert a["steps"] > 0 and a["last_loss"] < a["first_loss"], a
    assert a["val_bits"] < a["start_bits"], a           # it learned something beyond the initial weights
    assert len(a["text"]) == 37                          # one character per generated token (vocabulary 128)
    for f in ("model.pb", "train.plan", "eval.plan", "generate.plan", "checkpoint.npz"):
        assert (tmp_path / "a" / f).exists(), f
    b = _run(name, tmp_path / "b", "--tokens", "37", "--seed", "3")
    assert b["text"] == a["text"] and b["val_bits"] == a["val_bits"]
    c = _run(name, tmp_path / "c", "--tokens", "37", "--seed", "3", "--temperature", "0.5", "--top-k", "1")
    assert len(c["text"]) == 37
    out = capsys.readouterr().out
    assert "bits/char" in out and "unigram baseline" in out


@pytest.mark.parametrize("name", EXAMPLES)
def test_resume_continues_where_the_checkpoint_left_off(name, tmp_path):
    whole = _run(name, tmp_path / "whole", "--steps", "12", "--tokens", "5")
    _run(name, tmp_path / "parts", "--steps", "6", "--tokens", "5")
    resumed = _run(name, tmp_path / "parts", "--steps", "12", "--tokens", "5", "--resume")
    assert resumed["steps"] == 6                         # only the steps after the checkpoint
    # the same batches and the same optimizer state: the same weights, the same validation loss
    assert np.isclose(resumed["val_bits"], whole["val_bits"], rtol=0, atol=1e-6), (resumed, whole)


def test_bad_flags_are_refused(tmp_path):
    mod = _load("train_gpt")
    for argv in (["--top-k", "0"], ["--temperature", "0"], ["--steps", "-1"], ["--config", "huge"]):
        with pytest.raises(SystemExit) as e:
            mod.main(["--out", str(tmp_path), *argv])
        assert e.value.code == 2, argv
