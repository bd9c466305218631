"""Pass: data_parallel — sum every gradient over the ranks of a data-parallel world.

Needs: the output of append_gradients (``graph.gradients_of``: variable → gradient value),
concrete shapes.  Guarantees: a new Graph in which the gradients are grouped into buckets
and each bucket is summed in place across ranks by one ``allreduce_start`` /
``allreduce_wait`` node pair (role gradient, named ``data_parallel/allreduce_start_<b>`` and
``data_parallel/allreduce_wait_<b>``, attr ``bucket = b``); ``gradients_of`` maps every
variable to its bucket's wait output (or a reshape of it), so append_optimizer's update ops
read the sum.  The
plan records the world size it was compiled for; append_optimizer folds the averaging 1/N
into every update op (``grad_scale``) and global-norm clipping measures the averaged
gradients, so N ranks on N shards take exactly the step of one process on the whole batch
(up to the summation order).  A graph without a training spec (an inference entry of a
data-parallel program) only records the world size, with no buckets.

Buckets (docs/data_parallel.md):

- the gradients are ordered by when their reduction could start in a provisional schedule
  (the graph's stored topological order: the backward pass as autodiff wrote it): after the
  node that writes the gradient and, as the sum is taken in place, after the last node that
  reads it (the backward pass may read a gradient on).  The last layers' gradients, written
  first by the backward pass, go in the first bucket, so its reduction overlaps the rest of the
  backward pass;
- greedy fill in that order: a bucket is closed when the next gradient would take it past its
  cap (``min(first_bucket, bucket_cap)`` for bucket 0, ``bucket_cap`` after; sizes counted
  64-byte aligned, as the planner lays members out) or has another dtype (float32 or float64:
  one dtype per bucket); a gradient bigger than the cap gets a bucket of its own;
- a value that is the gradient of several variables (``a + b`` gives both the same gradient)
  is reduced once;
- the planner lays a bucket's members out back to back in one arena range (the ops'
  ``contiguous_inputs``), so a gradient is reduced where the backward pass wrote it: a bucket
  member is the arena root of a gradient (the gradient itself, or the value a view chain such as
  reshape/squeeze aliases, byte for byte: the variable then gets a ``reshape`` of the sum, node
  ``data_parallel/view_<k>``); gradients with one root share it.  A gradient whose root is no
  arena value a step writes (a constant, a feed, a variable) or is fetched is first copied into a
  value of its own by a ``broadcast_to`` to its own shape (a bit-exact copy, node
  ``data_parallel/copy_<k>``); ``data_parallel.copied_bytes`` counts those bytes per step
  (normally 0).  Zero-size gradients need no reduction and stay as they are.

Graph metadata (copied into Plan.metadata by emit_plan): ``data_parallel.world_size`` "N",
``data_parallel.buckets`` "B", ``data_parallel.bucket_bytes`` "b0,b1,..." (the bytes each
allreduce reduces: from its first member's start to its last member's end, alignment padding
between members included), ``data_parallel.copied_bytes``.
"""

import operator

from graphc.compiler._memory import ARENA, MemoryModel
from graphc.compiler._rebuild import clone_graph
from graphc.compiler.plan_memory import ALIGNMENT
from graphc.compiler.recompute import parse_bytes
from graphc.distributed import SIZE_VARS, WORLD_SIZE_KEY, launcher_world_size
from graphc.errors import CompileError
from graphc.graph import GRADIENT, Placeholder, Variable

REDUCIBLE_DTYPES = ("float32", "float64")

META_WORLD_SIZE = WORLD_SIZE_KEY   # what the Session reads (graphc.distributed)
META_BUCKETS = "data_parallel.buckets"
META_BUCKET_BYTES = "data_parallel.bucket_bytes"
META_COPIED_BYTES = "data_parallel.copied_bytes"


class DataParallel:
    """How ``gc.compile(..., data_parallel=DataParallel(...))`` splits a training step over a
    data-parallel world (``data_parallel=True`` is ``DataParallel()``; an int N is
    ``DataParallel(world_size=N)``).

    ``world_size``: the number of ranks the plan is for (None: the number of processes the MPI
    launcher started, graphc.distributed.launcher_world_size(), read when compiling; a
    CompileError outside mpirun).  ``bucket_cap``: the
    most gradient bytes summed by one collective (an int or text such as "25MB", "4MiB");
    ``first_bucket``: the cap of the first bucket (at most bucket_cap), small so that the first
    reduction starts early in the backward pass.  A gradient bigger than the cap has a bucket
    of its own.

    Example (run under ``mpirun -np 2``; each rank feeds its own 64 rows)::

        plan = gc.compile(model, shapes={"x": (64, 784), "y": (64,)},
                          data_parallel=gc.DataParallel(bucket_cap="4MB"))
    """

    def __init__(self, world_size=None, bucket_cap="25MB", first_bucket="1MB"):
        if world_size is not None:
            world_size = _check_world_size(world_size, "DataParallel(world_size=...)")
        self.world_size = world_size
        self.bucket_cap = _parse_cap(bucket_cap, "bucket_cap")
        self.first_bucket = _parse_cap(first_bucket, "first_bucket")

    def __repr__(self):
        return (f"DataParallel(world_size={self.world_size}, bucket_cap={self.bucket_cap}, "
                f"first_bucket={self.first_bucket})")

    def __eq__(self, other):
        return isinstance(other, DataParallel) and (self.world_size, self.bucket_cap, self.first_bucket) == (
            other.world_size, other.bucket_cap, other.first_bucket)


def _check_world_size(n, what):
    try:
        if isinstance(n, bool):
            raise TypeError
        n = operator.index(n)
    except TypeError:
        raise CompileError(f"{what} takes the number of ranks, an int >= 1, got {n!r}") from None
    if n < 1:
        raise CompileError(f"{what}: the number of ranks must be >= 1, got {n}")
    return n


def _parse_cap(value, what):
    try:
        n = parse_bytes(value)
    except CompileError:
        raise CompileError(f"DataParallel({what}=...) takes a byte count such as 26214400 or '25MB', "
                           f"got {value!r}") from None
    if n < 1:
        raise CompileError(f"DataParallel({what}=...) must be at least 1 byte, got {value!r}")
    return n


def resolve(data_parallel):
    """``compile``'s ``data_parallel=`` as a DataParallel with a concrete world size, or None
    (not data-parallel).  None/False: None; True: the launcher's world; an int N; or a
    DataParallel (its world_size None: the launcher's)."""
    if data_parallel is None or data_parallel is False:
        return None
    if data_parallel is True:
        data_parallel = DataParallel()
    elif not isinstance(data_parallel, DataParallel):
        if not hasattr(data_parallel, "__index__"):
            raise CompileError(f"data_parallel= takes True, the number of ranks N or a gc.DataParallel(...), "
                               f"got {type(data_parallel).__name__} {data_parallel!r}")
        data_parallel = DataParallel(world_size=_check_world_size(data_parallel, "data_parallel="))
    if data_parallel.world_size is None:
        n = launcher_world_size()
        if n is None:
            raise CompileError(f"data_parallel=True: the world size is unknown (mpi4py.MPI is not imported and none "
                               f"of {', '.join(SIZE_VARS)} is set): run under mpirun or pass "
                               f"data_parallel=N")
        data_parallel = DataParallel(n, data_parallel.bucket_cap, data_parallel.first_bucket)
    return data_parallel


def _aligned(nbytes):
    return -(-nbytes // ALIGNMENT) * ALIGNMENT


def _needs_copy(graph, model, name, fetched_roots):
    """Why the gradient value ``name`` cannot be reduced where it lies, in its root (None: it
    can): the root must be an arena value that a step writes and no fetch reads."""
    producer = graph.producer(name)
    if isinstance(producer, Placeholder):
        return "a feed"
    if isinstance(producer, Variable):
        return "a variable"
    root = model.root[name]
    if model.storage[root] != ARENA:
        return f"{model.storage[root].lower()} storage"
    if isinstance(graph.producer(root), Placeholder):
        return "a view of a feed"
    if model.nbytes[root] != model.nbytes[name]:
        return "a view of part of a value"   # (no view op does this today)
    if root in fetched_roots:
        return "fetched"
    return None


def data_parallel(graph, config=None, first_slot=0):
    """``config``: a DataParallel with a concrete world size (see :func:`resolve`), None:
    the graph is returned unchanged.  ``first_slot``: the bucket number of the first bucket
    (the entries of one program take disjoint slot numbers of the communicator they share)."""
    if config is None:
        return graph
    if graph.training is None or not graph.training.loss:
        # an inference entry of a data-parallel program: it records the world and reduces nothing
        out = clone_graph(graph)
        out.metadata.update(_metadata(config, [], 0))
        return out
    grads_of = getattr(graph, "gradients_of", None)
    if grads_of is None:
        raise CompileError("data_parallel needs append_gradients first")
    model = MemoryModel(graph)
    # The provisional schedule: the graph's stored topological order, in which autodiff wrote the
    # backward pass layer by layer from the loss down (schedule_nodes' "stored" policy; its memory
    # policies give the same buckets on the examples, and would cost a second scheduling: 1.4 s
    # of a 20,000-node chain's compile).
    position, last_read = {}, {}
    for k, node in enumerate(graph.topological_order()):
        position[node.name] = k
        for i in node.inputs:
            last_read[model.root[i]] = k
    fetched_roots = {model.root[o] for o in graph.outputs if graph.has_value(o)}

    out = clone_graph(graph)
    loss_provenance = out.tensor(graph.training.loss).producer.provenance
    variables = {v.name: v for v in graph.variables}
    # The unique gradient values, in the order the variables list them, each with its variables.
    users = {}
    for var, g in grads_of.items():
        users.setdefault(g, []).append(var)
    # What each gradient's bucket member is: its root (the value itself, or the value a view of
    # it aliases: views keep every byte in order, so the gradient is a reshape of the summed
    # root), shared by every gradient with that root; or a copy of its own.
    member_of, copy_of, ready = {}, {}, {}
    for g, names in users.items():
        dtype = graph.tensor(g).dtype
        if dtype not in REDUCIBLE_DTYPES:
            raise CompileError(f"data_parallel: the gradient of variable {names[0]!r} is {dtype}; data-parallel "
                               f"training sums {' or '.join(REDUCIBLE_DTYPES)} gradients only")
        if model.nbytes[g] == 0:
            continue   # nothing to sum
        written = position.get(graph.producer(g).name, -1)
        if _needs_copy(graph, model, g, fetched_roots) is None:
            root = model.root[g]
            member_of[g] = root
            # summed in place: after its writer and every node that reads its local bytes
            # (the backward pass may read a gradient on)
            ready[root] = max(position.get(graph.producer(root).name, -1), last_read.get(root, -1))
        else:
            copy_of[g] = member_of[g] = g   # renamed to its copy below
            ready[g] = written              # the copy runs right after the writer
    order = sorted(dict.fromkeys(member_of.values()), key=lambda m: ready[m])   # stable: ties keep variable order
    copied_bytes = 0
    for k, m in enumerate(order):
        if m not in copy_of:
            continue
        t = out.tensor(m)
        with out.building(GRADIENT, variables[users[m][0]].provenance):
            (copy,) = out.add_node("broadcast_to", [t], {"shape": tuple(t.shape)}, name=f"data_parallel/copy_{k}")
        copy_of[m] = copy.name
        copied_bytes += model.nbytes[m]

    # greedy fill in the provisional schedule's order
    buckets, current, size, dtype = [], [], 0, None
    for m in order:
        nbytes, m_dtype = model.nbytes[m], graph.tensor(m).dtype
        cap = config.bucket_cap if buckets else min(config.first_bucket, config.bucket_cap)
        if current and (m_dtype != dtype or size + _aligned(nbytes) > cap):
            buckets.append(current)
            current, size = [], 0
        current.append(m)
        size += _aligned(nbytes)
        dtype = m_dtype
    if current:
        buckets.append(current)

    summed = {}   # member → the wait output holding its sum
    bucket_bytes = []
    with out.building(GRADIENT, loss_provenance):
        for b, members in enumerate(buckets, start=first_slot):
            ins = [copy_of.get(m, m) for m in members]
            started = out.add_node("allreduce_start", ins, {"bucket": b},
                                   name=f"data_parallel/allreduce_start_{b}")
            waited = out.add_node("allreduce_wait", [t.name for t in started], {"bucket": b},
                                  name=f"data_parallel/allreduce_wait_{b}")
            for m, t in zip(members, waited):
                summed[m] = t
            sizes = [model.nbytes[m] for m in members]
            bucket_bytes.append(sum(_aligned(n) for n in sizes[:-1]) + sizes[-1])
        reduced = {}
        for k, (g, m) in enumerate(member_of.items()):
            t = summed[m]
            shape = graph.tensor(g).shape
            if tuple(t.shape) != tuple(shape):   # a view of the root: the same view of the sum
                (t,) = out.add_node("reshape", [t], {"shape": tuple(shape)}, name=f"data_parallel/view_{k}")
            reduced[g] = t.name
    out.gradients_of = {var: reduced.get(g, g) for var, g in grads_of.items()}
    out.data_parallel_world_size = config.world_size   # for append_optimizer, next (see grad_scale)
    out.metadata.update(_metadata(config, bucket_bytes, copied_bytes))
    return out


def _metadata(config, bucket_bytes, copied_bytes):
    return {META_WORLD_SIZE: str(config.world_size), META_BUCKETS: str(len(bucket_bytes)),
            META_BUCKET_BYTES: ",".join(str(n) for n in bucket_bytes), META_COPIED_BYTES: str(copied_bytes)}


def grad_scale(graph):
    """The factor append_optimizer folds into every update op: 1/N when ``graph`` is this pass's
    output for a world of N ranks, else 1 (a model's own metadata, which a hand-built
    data-parallel graph may carry, scales nothing)."""
    n = getattr(graph, "data_parallel_world_size", None)
    return 1.0 / n if n else 1.0
