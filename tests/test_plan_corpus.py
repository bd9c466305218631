"""Every malformed plan of tests/plan_corpus.py gets a typed graphc error from every
entry point: gc.load_plan(path), gc.Session(path), gc.Session(proto) and `graphc run`
(exit 2, one stderr line) — no crash, no hang, bounded memory.

Each entry point runs all cases in one worker subprocess (under RLIMIT_AS) that prints
one JSON line per case; a case that crashes the worker or gets no answer within
CASE_TIMEOUT is named as the culprit and a fresh worker goes on with the next cases.
"""

import functools
import json
import os
import selectors
import subprocess
import sys
import tempfile

import numpy as np
import plan_corpus as corpus
import pytest
from plan_corpus import CASES, ENTRY_POINTS
from subproc import child_env

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "plan_corpus.py")
# The folder holding the graphc this process imported (site-packages after `pip install .`,
# the source tree with an in-place build): the workers must import that same package.
CASE_TIMEOUT = 60     # seconds a case may take (the first includes the worker's imports)


def _env():
    env = child_env()
    env.pop("GRAPHC_MEMORY_LIMIT", None)
    env["OPENBLAS_NUM_THREADS"] = "1"   # keeps the worker's address space small under RLIMIT_AS
    return env


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("plan_corpus")
    base = corpus.base_plan()

    def save_feeds(prefix, arrays):
        files = {}
        for name, arr in arrays.items():
            files[name] = str(d / f"{prefix}{name}.npy")
            np.save(files[name], arr)
        return files

    base_feeds = save_feeds("", corpus.base_feeds())
    meta = {"feeds": base_feeds, "cases": {}}
    for case in CASES:
        p = corpus.build(case, base)
        (d / f"{case.name}.plan").write_bytes(p.SerializeToString())
        feeds = save_feeds(case.name + ".", corpus.plan_feeds(p)) if case.own_plan else base_feeds
        meta["cases"][case.name] = {"env": case.env, "feeds": feeds}
    (d / "cases.json").write_text(json.dumps(meta))
    return str(d)


def _spawn(entry, case_dir, names):
    """Run `names` through one worker process, streaming its JSON lines.  A case that
    gets no answer within CASE_TIMEOUT (a hang) or during which the worker dies (a
    crash) is recorded as such, and a fresh worker goes on with the cases after it."""
    results, remaining = {}, list(names)
    while remaining:
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([sys.executable, WORKER, entry, case_dir, *remaining], stdout=subprocess.PIPE,
                                    stderr=err, env=_env(), cwd=tempfile.gettempdir())
            fd, buf = proc.stdout.fileno(), b""
            with selectors.DefaultSelector() as sel:
                sel.register(fd, selectors.EVENT_READ)
                while remaining:
                    if b"\n" not in buf:
                        if not sel.select(timeout=CASE_TIMEOUT):
                            results[remaining.pop(0)] = ("hang", f"no answer within {CASE_TIMEOUT} s")
                            break
                        chunk = os.read(fd, 1 << 16)
                        if not chunk:
                            proc.wait()
                            err.seek(0)
                            tail = err.read().decode(errors="replace")[-800:]
                            results[remaining.pop(0)] = (f"crash (exit {proc.returncode})", tail)
                            break
                        buf += chunk
                        continue
                    line, buf = buf.split(b"\n", 1)
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(rec, dict) and rec.get("case") in remaining:
                        remaining.remove(rec["case"])
                        results[rec["case"]] = (rec["outcome"], rec["message"])
            proc.kill()
            proc.wait()
            proc.stdout.close()
    return results


@functools.lru_cache(maxsize=None)
def _results(entry, case_dir):
    return _spawn(entry, case_dir, [c.name for c in CASES])


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case, entry, case_dir):
    outcome, message = _results(entry, case_dir)[case.name]
    if entry == "cli":
        lines = message.strip().splitlines()
        if case.error is None:
            assert outcome == "exit 0", message
        else:
            assert outcome == "exit 2", message
            assert len(lines) == 1 and lines[0].startswith("graphc run: error: "), message
        return
    want = case.load if entry == "load_plan" else case.error
    assert outcome == (want or "ok"), f"{case.layer} case: {message}"


def test_corpus_covers_every_layer_and_class():
    layers = {c.layer for c in CASES}
    assert layers == {"validator", "wrapper", "resource", "kernel"}
    assert {c.error for c in CASES} >= {"ModelFormatError", "ResourceError", None}


def test_base_plan_is_valid_and_runs(tmp_path):
    import graphc as gc

    base = corpus.base_plan()
    path = tmp_path / "base.plan"
    path.write_bytes(base.SerializeToString())
    gc.load_plan(path)
    out = gc.Session(str(path), threads=1).run(corpus.base_feeds())
    assert all(np.isfinite(v).all() for v in out.values())


def _as_limit():
    corpus.limit_address_space()


@pytest.mark.parametrize("name", ["overlapping_live_values", "arena_allocation_fails", "unknown_dtype"])
def test_graphc_run_process_exits_2_with_one_line(name, case_dir):
    """The real `python -m graphc run` process (the batch above calls cli.main in-process)."""
    meta = json.loads(open(os.path.join(case_dir, "cases.json")).read())
    argv = [sys.executable, "-m", "graphc", "run", os.path.join(case_dir, name + ".plan")]
    for feed, file in meta["feeds"].items():
        argv += ["--feed", f"{feed}={file}"]
    # not the repository root as cwd: `python -m` puts the cwd first on sys.path
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=CASE_TIMEOUT, env=_env(),
                          cwd=tempfile.gettempdir(),
                          preexec_fn=_as_limit)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphc run: error: "), proc.stderr
