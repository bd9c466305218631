"""Entry points: several named training steps and inference functions over one set of
variables (graphc.graph.Entry, minimize(name=...), g.entry), their .pb form, and
compile(entry=) / compile(entries=) (docs/entries.md).

The runtime side here moves the shared state between single-entry Sessions by hand
(get/set_variable), which is exactly what one shared persistent store does; the
Session(program) tests live with the Session."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc import program as program_mod
from graphc._proto import graphc_pb2 as pb
from graphc.errors import CompileError, GraphError, ModelFormatError
from graphc.graph import ENTRY_NAME, Entry
from graphc.serialize import graph_from_proto, model_to_proto

HERE = os.path.basename(__file__)
N, D = 6, 3


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, D)).astype(np.float32)
    t = rng.standard_normal((N, 1)).astype(np.float32)
    return x, t


def _linear(var_b="all"):
    """y = x @ w + b with two losses:  fit = mean((y - t)²)  and  small = mean((x @ w)²).

    The two training entries: "fit" (Adam) and "small" (SGD with momentum).  ``var_b``:
    "all" — fit trains [w, b], small trains [w] (overlapping: w is updated by both);
    "disjoint" — fit trains [b], small trains [w]."""
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, D))
        t = gc.placeholder("t", (None, 1))
        w = gc.variable("w", (D, 1), init=gc.init.xavier_uniform(seed=3))
        b = gc.variable("b", (1,), init=gc.init.constant(0.25))
        xw = gc.matmul(x, w, name="xw")
        y = gc.add(xw, b, name="y")
        fit = gc.mean((y - t) * (y - t), name="fit_loss")
        small = gc.mean(xw * xw, name="small_loss")
        fit_vars = [w, b] if var_b == "all" else [b]
        gc.optim.Adam(0.05, betas=(0.8, 0.9)).minimize(fit, var_list=fit_vars, name="fit", fetches=[y])
        gc.optim.SGD(0.1, momentum=0.9).minimize(small, var_list=[w], name="small")
        g.entry("predict", fetches=[y])
    return g


# -- numpy oracle: the same alternation, written out by hand (float64) ---------------------------

class _NumpyLinear:
    def __init__(self, g, overlapping):
        self.w = np.array(g.tensor("w").producer.init_value, np.float64)
        self.b = np.array(g.tensor("b").producer.init_value, np.float64)
        self.overlapping = overlapping
        self.m = {"w": np.zeros_like(self.w), "b": np.zeros_like(self.b)}
        self.v = {"w": np.zeros_like(self.w), "b": np.zeros_like(self.b)}
        self.step = 0
        self.momentum = np.zeros_like(self.w)

    def fit(self, x, t):
        x = x.astype(np.float64)
        y = x @ self.w + self.b
        r = y - t
        loss = np.mean(r * r)
        grads = {"w": 2 * x.T @ r / r.size, "b": np.array([2 * r.sum() / r.size])}
        self.step += 1
        lr, b1, b2, eps = 0.05, 0.8, 0.9, 1e-8
        for name in (["w", "b"] if self.overlapping else ["b"]):
            g = grads[name]
            self.m[name] = b1 * self.m[name] + (1 - b1) * g
            self.v[name] = b2 * self.v[name] + (1 - b2) * g * g
            mhat = self.m[name] / (1 - b1 ** self.step)
            vhat = self.v[name] / (1 - b2 ** self.step)
            setattr(self, name, getattr(self, name) - lr * mhat / (np.sqrt(vhat) + eps))
        return loss, y

    def small(self, x):
        x = x.astype(np.float64)
        xw = x @ self.w
        loss = np.mean(xw * xw)
        g = 2 * x.T @ xw / xw.size
        self.momentum = 0.9 * self.momentum + g
        self.w = self.w - 0.1 * self.momentum
        return loss


class _SharedStore:
    """One persistent store over several single-entry Sessions (what Session(program) keeps):
    before an entry runs, its session gets the store's values; afterwards the store takes
    its session's values back."""

    def __init__(self, prog):
        self.plans = {name: prog.plan(name) for name in prog.entries}
        self.sessions = {name: gc.Session(plan, threads=1) for name, plan in self.plans.items()}
        self.values = {v.name: self.sessions[prog.entries[0]].get_variable(v.name) for v in prog.persistent}

    def run(self, name, feeds):
        sess = self.sessions[name]
        for var in self.plans[name].proto.persistent:
            sess.set_variable(var.name, self.values[var.name])
        out = sess.run(feeds)
        for var in self.plans[name].proto.persistent:
            self.values[var.name] = sess.get_variable(var.name)
        return out


@pytest.mark.parametrize("layout", ["overlapping", "disjoint"])
def test_alternating_entries_equal_numpy_and_the_reference_interpreter(layout):
    g = _linear("all" if layout == "overlapping" else "disjoint")
    x, t = _data()
    prog = gc.compile(g, entries=["fit", "small", "predict"], shapes={"x": x.shape, "t": t.shape})
    assert prog.entries == ["fit", "small", "predict"]
    store = _SharedStore(prog)
    oracle = _NumpyLinear(g, overlapping=layout == "overlapping")
    lowered = {name: gc.compiler.lower_graph(g, shapes={"x": x.shape, "t": t.shape}, entry=name)
               for name in ("fit", "small")}
    ref_state = {}
    for step in range(4):
        xs, ts = x + step * 0.1, t - step * 0.05
        out = store.run("fit", {"x": xs, "t": ts})
        assert list(out) == ["fit_loss", "y"]          # a training entry fetches its loss first
        want_loss, want_y = oracle.fit(xs, ts)
        ref = gc.reference.evaluate(lowered["fit"], {"x": xs, "t": ts}, ["fit_loss", "y"], state=ref_state)
        np.testing.assert_allclose(out["fit_loss"], want_loss, rtol=1e-5)
        np.testing.assert_allclose(out["y"], want_y, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["fit_loss"], ref["fit_loss"], rtol=1e-6)

        out = store.run("small", {"x": xs})
        want = oracle.small(xs)
        ref = gc.reference.evaluate(lowered["small"], {"x": xs}, ["small_loss"], state=ref_state)
        np.testing.assert_allclose(out["small_loss"], want, rtol=1e-5)
        np.testing.assert_allclose(out["small_loss"], ref["small_loss"], rtol=1e-6)

        for name in ("w", "b"):
            np.testing.assert_allclose(store.values[name], getattr(oracle, name), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(store.values[name], ref_state[name], rtol=1e-6, atol=1e-7)

    # each optimizer's state is its own, under its entry's name
    trained_by_fit = ["w", "b"] if layout == "overlapping" else ["b"]
    want_names = {"w", "b", "fit/optimizer/step", "small/w/momentum"}
    want_names |= {f"fit/{v}/adam_{k}" for v in trained_by_fit for k in "mv"}
    assert set(store.values) == want_names
    assert int(store.values["fit/optimizer/step"]) == 4
    for v in trained_by_fit:
        np.testing.assert_allclose(store.values[f"fit/{v}/adam_m"], oracle.m[v], rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(store.values[f"fit/{v}/adam_v"], oracle.v[v], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(store.values["small/w/momentum"], oracle.momentum, rtol=1e-5, atol=1e-8)

    # the inference entry reads the variables both training entries wrote
    out = store.run("predict", {"x": x})
    np.testing.assert_allclose(out["y"], x @ oracle.w + oracle.b, rtol=1e-5, atol=1e-6)


def test_program_persistent_store_lists_every_entrys_state_once():
    g = _linear()
    prog = gc.compile(g, entries="all", shapes={"x": (N, D), "t": (N, 1)})
    assert prog.entries == ["fit", "small", "predict"]
    names = [v.name for v in prog.persistent]
    assert len(names) == len(set(names))
    assert set(names) == {"w", "b", "fit/optimizer/step", "fit/w/adam_m", "fit/w/adam_v", "fit/b/adam_m",
                          "fit/b/adam_v", "small/w/momentum"}
    trainable = {v.name for v in prog.persistent if v.trainable}
    assert trainable == {"w", "b"}
    for name in prog.entries:
        assert prog.entry_proto(name).metadata["entry"] == name
    # the saved program reads back equal
    again = program_mod.program_from_bytes(prog.to_bytes())
    assert again == prog


def test_default_training_spec_keeps_its_state_names():
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, D))
        w = gc.variable("w", (D, 1), init=gc.init.ones())
        loss = gc.mean(gc.matmul(x, w) ** 2)
        spec = gc.optim.Adam(0.1).minimize(loss)
    assert g.training is spec and g.entries == {}
    plan = gc.compile(g, shapes={"x": (N, D)})
    assert {v.name for v in plan.proto.persistent} == {"w", "w/adam_m", "w/adam_v", "optimizer/step"}
    assert "entry" not in plan.proto.metadata


def test_compile_one_entry_gives_its_plan():
    g = _linear()
    shapes = {"x": (N, D), "t": (N, 1)}
    fit = gc.compile(g, entry="fit", shapes=shapes)
    assert isinstance(fit, gc.Plan)
    assert fit.fetches == ["fit_loss", "y"]
    assert fit.training.loss == "fit_loss" and list(fit.training.var_list) == ["w", "b"]
    assert fit.proto.metadata["entry"] == "fit"
    predict = gc.compile(g, entry="predict", shapes={"x": (2, D)})
    assert predict.fetches == ["y"] and predict.training is None
    assert [f.name for f in predict.proto.persistent] == ["w", "b"]
    assert predict.feeds == ["x"]      # t is not needed by the inference entry: no shape asked for it
    # the entry's plan inside a program is this plan (renumbered onto the shared store)
    prog = gc.compile(g, entries=["predict"], shapes={"x": (2, D)})
    x = _data()[0][:2]
    np.testing.assert_array_equal(gc.Session(prog.plan("predict")).run({"x": x})["y"],
                                  gc.Session(predict).run({"x": x})["y"])


def test_inference_entry_takes_the_inference_form_of_dropout():
    with gc.Graph() as g:
        x = gc.placeholder("x", (4, 8))
        w = gc.variable("w", (8, 8), init=gc.init.xavier_uniform(seed=0))
        h = gc.dropout(gc.matmul(x, w), p=0.5, seed=1)
        gc.optim.SGD(0.1).minimize(gc.mean(h * h), name="train")
        g.entry("infer", fetches=[h])
    prog = gc.compile(g, entries="all")
    names = [v.name for v in prog.persistent]
    assert "rng/step" in names                         # drawn by the training entry only
    infer = prog.plan("infer")
    assert not any(s.op.startswith("dropout") or "philox" in s.op for s in infer.proto.steps)
    xv = np.ones((4, 8), np.float32)
    np.testing.assert_allclose(gc.Session(infer).run({"x": xv})["dropout"], xv @ g.tensor("w").producer.init_value,
                               rtol=1e-6)


def test_per_entry_shapes_override_the_flat_ones():
    g = _linear()
    prog = gc.compile(g, entries="all", shapes={"x": (N, D), "t": (N, 1), "predict": {"x": (11, D)}})
    assert list(prog.plan("predict").proto.values[prog.plan("predict").proto.feeds[0]].dims) == [11, D]
    assert list(prog.plan("fit").proto.values[prog.plan("fit").proto.feeds[0]].dims) == [N, D]
    plan = gc.compile(g, entry="predict", shapes={"x": (N, D), "predict": {"x": (7, D)}})
    assert list(plan.proto.values[plan.proto.feeds[0]].dims) == [7, D]


def test_shapes_errors():
    g = _linear()
    with pytest.raises(CompileError, match="'predict' is an entry, so its value must be a dict"):
        gc.compile(g, entry="predict", shapes={"predict": (2, D)})
    with pytest.raises(CompileError, match=r"shapes\['x'\] is a dict but 'x' is not an entry"):
        gc.compile(g, entry="predict", shapes={"x": {"x": (2, D)}})
    with gc.Graph() as g2:
        x = gc.placeholder("sample", (None, 2))
        g2.entry("sample", fetches=[gc.relu(x)])
    with pytest.raises(CompileError, match="names both a placeholder and an entry"):
        gc.compile(g2, entry="sample", shapes={"sample": (3, 2)})


def test_compile_argument_errors():
    g = _linear()
    shapes = {"x": (N, D), "t": (N, 1)}
    with pytest.raises(CompileError, match="fetches= and train= cannot be combined with entries="):
        gc.compile(g, entries=["fit"], shapes=shapes, fetches=["y"])
    with pytest.raises(CompileError, match="cannot be combined with entries="):
        gc.compile(g, entries=["fit"], shapes=shapes, train=False)
    with pytest.raises(CompileError, match="cannot be combined with entry="):
        gc.compile(g, entry="fit", shapes=shapes, fetches=["y"])
    with pytest.raises(CompileError, match="not both"):
        gc.compile(g, entry="fit", entries=["fit"], shapes=shapes)
    with pytest.raises(CompileError, match=r"no entry 'nope'; its entries: 'fit', 'small', 'predict'"):
        gc.compile(g, entry="nope", shapes=shapes)
    with pytest.raises(CompileError, match=r"no entry 'nope'"):
        gc.compile(g, entries=["fit", "nope"], shapes=shapes)
    with pytest.raises(CompileError, match="more than once"):
        gc.compile(g, entries=["fit", "fit"], shapes=shapes)
    with pytest.raises(CompileError, match="entries= is empty"):
        gc.compile(g, entries=[], shapes=shapes)
    with pytest.raises(CompileError, match="entry='fit'"):
        gc.compile(g, entries="fit", shapes=shapes)
    # no default training spec: compile(model) says what to do instead
    with pytest.raises(CompileError, match=r"named entries \('fit', 'small', 'predict'\) .*entry=NAME"):
        gc.compile(g, shapes=shapes)
    with pytest.raises(CompileError, match="named entries"):
        gc.compile(g, shapes=shapes, train=False)
    # ... but explicit fetches, or declared outputs, still compile an inference plan as before
    assert gc.compile(g, shapes=shapes, fetches=["y"]).fetches == ["y"]
    g.set_outputs(["xw"])
    assert gc.compile(g, shapes=shapes, train=False).fetches == ["xw"]
    with gc.Graph() as plain:
        gc.relu(gc.placeholder("x", (2,)))
    with pytest.raises(CompileError, match="no named entries"):
        gc.compile(plain, entries="all")


def test_an_error_inside_an_entry_names_it():
    g = _linear()
    with pytest.raises(CompileError, match=r"^entry 'fit': .*placeholder 't'.*unbound"):
        gc.compile(g, entries=["predict", "fit"], shapes={"x": (N, D)})


def test_model_with_entries_and_a_default_spec_compiles_the_default_as_before():
    def build(with_entries):
        with gc.Graph() as g:
            x = gc.placeholder("x", (None, D))
            w = gc.variable("w", (D, 2), init=gc.init.xavier_uniform(seed=0))
            y = gc.matmul(x, w, name="y")
            loss = gc.mean(y * y, name="loss")
            gc.optim.Adam(0.1).minimize(loss)
            if with_entries:
                gc.optim.SGD(0.1).minimize(loss, name="sgd_step")
                g.entry("infer", fetches=[y])
        return g
    shapes = {"x": (N, D)}
    assert gc.compile(build(True), shapes=shapes).to_bytes() == gc.compile(build(False), shapes=shapes).to_bytes()
    assert (gc.compile(build(True), shapes=shapes, fetches=["y"], train=False).to_bytes()
            == gc.compile(build(False), shapes=shapes, fetches=["y"], train=False).to_bytes())


# -- build-time errors ---------------------------------------------------------------------------

def test_entries_are_recorded_in_order():
    g = _linear()
    assert list(g.entries) == ["fit", "small", "predict"]
    fit = g.entries["fit"]
    assert isinstance(fit, Entry) and fit.is_training and fit.fetches == ["y"]
    assert fit.training.loss == "fit_loss" and fit.training.var_list == ["w", "b"]
    assert fit.training.optimizer.kind == "adam"
    assert g.entries["small"].fetches == [] and g.entries["small"].training.optimizer.kind == "sgd"
    assert g.entries["predict"] == Entry("predict", ["y"], None)
    assert g.training is None    # named entries leave the default training spec alone


def test_entry_name_rule_matches_the_programs():
    assert ENTRY_NAME.pattern == program_mod.ENTRY_NAME.pattern


def _errors_at_this_file(excinfo):
    assert f"{HERE}:" in str(excinfo.value), str(excinfo.value)


@pytest.mark.parametrize("bad", ["", "a b", "x/y", "t:0", 7, None])
def test_bad_entry_names(bad):
    with gc.Graph() as g:
        y = gc.relu(gc.placeholder("x", (2,)))
        with pytest.raises(GraphError, match="entry name") as e:
            g.entry(bad, fetches=[y])
        _errors_at_this_file(e)
        if bad is not None:     # name=None is the default training spec
            with pytest.raises(GraphError, match="entry name"):
                gc.optim.SGD(0.1).minimize(gc.sum(y), name=bad)
    assert g.entries == {}


def test_duplicate_entry_names():
    with gc.Graph() as g:
        y = gc.relu(gc.placeholder("x", (2,)))
        loss = gc.sum(y)
        g.entry("a", fetches=[y])
        with pytest.raises(GraphError, match="duplicate entry name 'a': the graph already has a inference") as e:
            gc.optim.SGD(0.1).minimize(loss, name="a")
        _errors_at_this_file(e)
        gc.optim.SGD(0.1).minimize(loss, name="b")
        with pytest.raises(GraphError, match="duplicate entry name 'b'"):
            g.entry("b", fetches=[y])
    assert list(g.entries) == ["a", "b"]


def test_unknown_fetches():
    with gc.Graph():
        z = gc.relu(gc.placeholder("z", (2,)))
    with gc.Graph() as g:
        y = gc.relu(gc.placeholder("x", (2,)))
        with pytest.raises(GraphError, match="entry 'e': fetch 'relu' is a Tensor of another graph") as e:
            g.entry("e", fetches=[z])
        _errors_at_this_file(e)
        with pytest.raises(GraphError, match="fetch 'nothing' is not a value of the graph"):
            g.entry("e", fetches=["nothing"])
        with pytest.raises(GraphError, match="a fetch must be a Tensor or a value name, got int"):
            g.entry("e", fetches=[3])
        with pytest.raises(GraphError, match="give at least one fetch"):
            g.entry("e", fetches=[])
        with pytest.raises(GraphError, match="fetch 'nothing' is not a value"):
            gc.optim.SGD(0.1).minimize(gc.sum(y), name="t", fetches=["nothing"])
        with pytest.raises(GraphError, match="fetches= needs name="):
            gc.optim.SGD(0.1).minimize(gc.sum(y), fetches=[y])
        e = g.entry("e", fetches=[y, "relu", y])       # names and Tensors; repeats dropped
    assert e.fetches == ["relu"] and g.entries == {"e": e}


def test_bad_var_lists():
    with gc.Graph():
        w_other = gc.variable("w", (2,), init=gc.init.ones())
    with gc.Graph() as g:
        x = gc.placeholder("x", (2,))
        w = gc.variable("w", (2,), init=gc.init.ones())
        frozen = gc.variable("frozen", (2,), init=gc.init.ones(), trainable=False)
        h = gc.mul(x, w, name="h")
        loss = gc.sum(h * frozen)
        opt = gc.optim.Adam(0.1)
        cases = [([x], r"var_list names 'x', which is a placeholder, not a variable"),
                 ([h], r"var_list names 'h', which is the output of mul\(name=h\), not a variable"),
                 (["nothing"], "var_list names 'nothing', which is not a value of the graph"),
                 ([frozen], "'frozen', a variable created with trainable=False"),
                 ([w_other], "var_list item 'w' is a Tensor of another graph"),
                 ([1.5], "var_list items must be variables")]
        for var_list, message in cases:
            with pytest.raises(GraphError, match=message) as e:
                opt.minimize(loss, var_list=var_list, name="train")
            _errors_at_this_file(e)
            with pytest.raises(GraphError, match=message):   # the default spec checks the same
                opt.minimize(loss, var_list=var_list)
        assert g.entries == {} and g.training is None
        entry = opt.minimize(loss, var_list=[w, "w"], name="train")
    assert entry.training.var_list == ["w"]


# -- the .pb form ----------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    g = _linear()
    path = tmp_path / "m.pb"
    g.save(path)
    first = path.read_bytes()
    g.save(path)
    assert path.read_bytes() == first           # deterministic
    loaded = gc.load(path)
    assert loaded.entries == g.entries
    loaded.save(tmp_path / "again.pb")
    assert (tmp_path / "again.pb").read_bytes() == first
    model = pb.Model.FromString(first)
    assert [e.name for e in model.entries] == ["fit", "small", "predict"]
    assert not model.HasField("training")
    # a loaded model compiles to the same program as the graph it was saved from
    shapes = {"x": (N, D), "t": (N, 1)}
    assert gc.compile(str(path), entries="all", shapes=shapes) == gc.compile(g, entries="all", shapes=shapes)


def test_a_model_without_entries_has_no_entries_field(tmp_path):
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, D))
        w = gc.variable("w", (D, 1), init=gc.init.ones())
        gc.optim.SGD(0.1).minimize(gc.mean(gc.matmul(x, w) ** 2))
    model = model_to_proto(g)
    assert [f.name for f, _ in model.ListFields()] == ["format_version", "min_consumer_version", "producer_name",
                                                       "producer_version", "graph", "training"]
    g.save(tmp_path / "m.pb")
    loaded = gc.load(tmp_path / "m.pb")
    assert loaded.entries == {}
    assert gc.compile(loaded, shapes={"x": (N, D)}) == gc.compile(g, shapes={"x": (N, D)})


def _corrupt(mutate):
    model = model_to_proto(_linear())
    mutate(model)
    return model


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.entries[2].fetches.append("nothing"), "entry 'predict': fetch 'nothing' is not a value"),
    (lambda m: m.entries[2].fetches.append("y"), "entry 'predict': a fetch is listed twice"),
    (lambda m: m.entries[2].ClearField("fetches"), "entry 'predict': an inference entry with no fetches"),
    (lambda m: setattr(m.entries[1], "name", "fit"), r"entry 1 \('fit'\): duplicate entry name"),
    (lambda m: setattr(m.entries[1], "name", "a/b"), r"entry 1 \('a/b'\): entry names are"),
    (lambda m: setattr(m.entries[1], "name", ""), r"entry 1 \(''\): entry names are"),
    (lambda m: setattr(m.entries[0].training, "loss", "nothing"), "entry 'fit': loss 'nothing' is not a value"),
    (lambda m: setattr(m.entries[0].training, "loss", ""), "entry 'fit': its training spec names no loss"),
    (lambda m: setattr(m.entries[0].training, "loss", "y"), "entry 'fit': loss 'y' must be a float scalar"),
    (lambda m: m.entries[0].training.var_list.append("x"), "entry 'fit': var_list names 'x', which is not a var"),
    (lambda m: m.entries[0].training.var_list.append("w"), "entry 'fit': var_list names a variable twice"),
    (lambda m: setattr(m.entries[0].training.optimizer, "kind", "rmsprop"), "entry 'fit': unknown optimizer"),
    (lambda m: m.entries[0].training.optimizer.hyperparameters.__setitem__("lr", -1.0), "entry 'fit': .*lr"),
])
def test_malformed_entries_are_model_format_errors(mutate, message):
    with pytest.raises(ModelFormatError, match=message):
        graph_from_proto(_corrupt(mutate))


def test_non_trainable_var_list_in_a_file():
    with gc.Graph() as g:
        x = gc.placeholder("x", (2,))
        w = gc.variable("w", (2,), init=gc.init.ones())
        gc.variable("frozen", (2,), init=gc.init.ones(), trainable=False)
        gc.optim.SGD(0.1).minimize(gc.sum(x * w), name="train")
    model = model_to_proto(g)
    model.entries[0].training.var_list.append("frozen")
    with pytest.raises(ModelFormatError, match="var_list names 'frozen', which is not trainable"):
        graph_from_proto(model)


def test_corrupt_entries_bytes_are_a_model_format_error(tmp_path):
    data = model_to_proto(_linear()).SerializeToString(deterministic=True)
    # field 8 (Model.entries), wire type 2, claiming 5 bytes of which only the 2 garbage ones follow
    path = tmp_path / "bad.pb"
    path.write_bytes(data + bytes([0x42, 5, 0xFF, 0xFF]))
    with pytest.raises(ModelFormatError, match="not a graphc model"):
        gc.load(path)
    # an Entry whose name field holds invalid UTF-8
    path.write_bytes(data + bytes([0x42, 3, 0x0A, 1, 0xFF]))
    with pytest.raises(ModelFormatError):
        gc.load(path)


def test_reference_evaluates_an_entry():
    g = _linear()
    x, t = _data()
    out = gc.reference.evaluate(g, {"x": x, "t": t}, entry="fit")
    assert list(out) == ["fit_loss", "y"]
    w, b = (g.tensor(n).producer.init_value for n in ("w", "b"))
    np.testing.assert_allclose(out["y"], x @ w + b, rtol=1e-6)
    assert list(gc.reference.evaluate(g, {"x": x}, entry="predict")) == ["y"]
    with pytest.raises(KeyError, match="no entry 'nope'"):
        gc.reference.evaluate(g, {"x": x}, entry="nope")
    with pytest.raises(ValueError, match="lower_graph"):
        gc.reference.evaluate(g, {"x": x, "t": t}, entry="fit", state={})


def _mostly(good, bad):
    """Mostly one of ``good``, sometimes one of ``bad`` (so most drawn files load and compile)."""
    return st.sampled_from(good) | st.sampled_from(good) | st.sampled_from(good) | st.sampled_from(bad)


_VALUES = ["y", "xw", "fit_loss", "small_loss", "x", "w"]
_entry_messages = st.lists(st.fixed_dictionaries({
    "name": _mostly([None], ["", "a/b", "t:0", "e0"]),   # None: "e<index>", unique
    "fetches": st.lists(_mostly(_VALUES, ["nothing", ""]), max_size=3),
    "training": st.none() | st.fixed_dictionaries({
        "loss": _mostly(["fit_loss", "small_loss"], ["y", "x", "nothing", ""]),
        "var_list": st.lists(_mostly(["w", "b"], ["x", "y", "nothing"]), max_size=2),
        "kind": _mostly(["sgd", "adam", "adamw"], ["", "rmsprop"]),
        "lr": _mostly([0.1], [0.0, -1.0, float("nan")]),
        "momentum": st.sampled_from([0.0, 0.9]),
        "nesterov": st.sampled_from([0.0, 1.0]),
        "clip": _mostly([0.0, 1.0], [-1.0])})}), max_size=3)


@settings(max_examples=60, deadline=None)
@given(_entry_messages)
def test_any_entries_field_loads_or_is_a_model_format_error_and_compiles_or_is_a_compile_error(entries):
    """Whatever a file's entries claim: loading gives a model or a ModelFormatError; every
    entry of a model that loads compiles into a program or raises a CompileError."""
    model = model_to_proto(_linear())
    del model.entries[:]
    for i, e in enumerate(entries):
        if e["name"] is None:
            e["name"] = f"e{i}"
        msg = model.entries.add(name=e["name"])
        msg.fetches.extend(e["fetches"])
        if e["training"] is not None:
            t = e["training"]
            msg.training.loss = t["loss"]
            msg.training.var_list.extend(t["var_list"])
            msg.training.optimizer.kind = t["kind"]
            for k in ("lr", "momentum", "nesterov"):
                msg.training.optimizer.hyperparameters[k] = t[k]
            msg.training.optimizer.clip_global_norm = t["clip"]
    try:
        graph = graph_from_proto(model)
    except ModelFormatError:
        return
    assert list(graph.entries) == [e["name"] for e in entries]
    # what loaded re-saves to the same message
    assert model_to_proto(graph).SerializeToString(deterministic=True) == model.SerializeToString(deterministic=True)
    if not graph.entries:
        return
    try:
        prog = gc.compile(graph, entries="all", shapes={"x": (2, D), "t": (2, 1)})
    except CompileError as e:
        assert str(e).startswith("entry "), str(e)
        return
    assert prog.entries == list(graph.entries)


def test_program_compile_is_deterministic_and_applies_the_budget_to_every_entry():
    g = _linear()
    shapes = {"x": (64, D), "t": (64, 1)}
    prog = gc.compile(g, entries="all", shapes=shapes)
    assert gc.compile(g, entries="all", shapes=shapes).to_bytes() == prog.to_bytes()
    budget = prog.arena_bytes
    for name in prog.entries:   # each entry's plan alone is the one compile(entry=) gives
        alone = gc.compile(g, entry=name, shapes=shapes)
        assert prog.memory_report()["arena_bytes_by_entry"][name] == alone.arena_bytes
    tight = gc.compile(g, entries="all", shapes=shapes, memory_budget=budget)
    assert tight.arena_bytes <= budget
    with pytest.raises(CompileError, match="^entry 'fit': "):
        gc.compile(g, entries="all", shapes=shapes, memory_budget=16)


def test_gan_shaped_entries_train_only_their_own_variables():
    """A GAN's two Adam steps over disjoint var lists: train_d leaves G's weights bit for bit,
    train_g leaves D's, while each reads both; the alternation equals the reference
    interpreter's."""
    nn = gc.nn
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 8))
        z = gc.placeholder("z", (None, 4))
        G = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8), name="G")
        D = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1), name="D")
        fake = gc.tanh(G(z))
        d_real, d_fake = D(x), D(fake)
        d_loss = gc.add(gc.mean(gc.softplus(-d_real)), gc.mean(gc.softplus(d_fake)), name="d_loss")
        g_loss = gc.mean(gc.softplus(-d_fake), name="g_loss")
        d_fake_mean = gc.mean(gc.sigmoid(d_fake), name="d_fake_mean")
        gc.optim.Adam(1e-2, betas=(0.5, 0.999)).minimize(d_loss, var_list=D.variables(g), name="train_d")
        gc.optim.Adam(1e-2, betas=(0.5, 0.999)).minimize(g_loss, var_list=G.variables(g), name="train_g",
                                                          fetches=[d_fake_mean])
        g.entry("sample", fetches=[fake])
    d_vars, g_vars = list(D.variables(g)), list(G.variables(g))
    shapes = {"x": (5, 8), "z": (5, 4), "sample": {"z": (3, 4)}}
    prog = gc.compile(g, entries="all", shapes=shapes)
    store = _SharedStore(prog)
    lowered = {n: gc.compiler.lower_graph(g, shapes=shapes, entry=n) for n in ("train_d", "train_g")}
    ref_state = {}
    rng = np.random.default_rng(1)
    for _ in range(3):
        feeds = {"x": rng.standard_normal((5, 8)).astype(np.float32),
                 "z": rng.standard_normal((5, 4)).astype(np.float32)}
        before = dict(store.values)
        out = store.run("train_d", feeds)
        ref = gc.reference.evaluate(lowered["train_d"], feeds, ["d_loss"], state=ref_state)
        np.testing.assert_allclose(out["d_loss"], ref["d_loss"], rtol=1e-5)
        for v in g_vars:
            np.testing.assert_array_equal(store.values[v], before[v])
        assert not all(np.array_equal(store.values[v], before[v]) for v in d_vars)

        before = dict(store.values)
        out = store.run("train_g", {"z": feeds["z"]})
        assert list(out) == ["g_loss", "d_fake_mean"]
        ref = gc.reference.evaluate(lowered["train_g"], {"z": feeds["z"]}, ["g_loss", "d_fake_mean"],
                                    state=ref_state)
        np.testing.assert_allclose(out["g_loss"], ref["g_loss"], rtol=1e-5)
        np.testing.assert_allclose(out["d_fake_mean"], ref["d_fake_mean"], rtol=1e-5)
        for v in d_vars:
            np.testing.assert_array_equal(store.values[v], before[v])
        assert not all(np.array_equal(store.values[v], before[v]) for v in g_vars)
    for v in d_vars + g_vars:
        np.testing.assert_allclose(store.values[v], ref_state[v], rtol=1e-4, atol=1e-6)
    assert int(store.values["train_d/optimizer/step"]) == 3 and int(store.values["train_g/optimizer/step"]) == 3
    assert not any(n.startswith("train_g/D/") or n.startswith("train_d/G/") for n in store.values)
    samples = store.run("sample", {"z": np.zeros((3, 4), np.float32)})["tanh"]
    assert samples.shape == (3, 8)


def test_entries_with_external_weights(tmp_path):
    g = _linear()
    path = tmp_path / "m.pb"
    g.save(path, external_threshold=0)
    assert (tmp_path / "m.pb.weights").exists()
    loaded = gc.load(path)
    assert loaded.entries == g.entries
    shapes = {"x": (N, D), "t": (N, 1)}
    assert gc.compile(loaded, entries="all", shapes=shapes) == gc.compile(g, entries="all", shapes=shapes)


def test_a_variable_holding_an_entrys_state_name_is_a_compile_error_naming_the_entry():
    for read_by_the_loss in (False, True):    # pruned before the optimizer pass, or still there
        with gc.Graph() as g:
            x = gc.placeholder("x", (2,))
            w = gc.variable("w", (2,), init=gc.init.ones())
            clash = gc.variable("step/w/momentum", (2,), trainable=False)
            loss = gc.sum(x * w * clash) if read_by_the_loss else gc.sum(x * w)
            gc.optim.SGD(0.1, momentum=0.9).minimize(loss, var_list=[w], name="step")
            gc.optim.SGD(0.1, momentum=0.9).minimize(loss, var_list=[w])
        with pytest.raises(CompileError, match=r"^entry 'step': optimizer state: .*'step/w/momentum'"):
            gc.compile(g, entry="step")
        gc.compile(g)   # the default spec's state is w/momentum: no clash
