"""Pass 5: schedule_nodes — put nodes in the order the plan will run them.

Needs: an acyclic Graph.
Guarantees: a new Graph with the same placeholders, variables, values and outputs
whose ``nodes`` list is a topological order that also honours the control dependencies
of in-place ops (a node with ``opdef.inplace`` runs after every other reader of the
persistent input it overwrites, views included; a node with ``opdef.alias`` after every
other reader of the arena generation it overwrites), and the same order every time for
the same input.

Memory-aware: when every shape is concrete, three list schedules are built and the one
with the lower peak of live arena bytes is kept (the first on a tie):

- "stored": among ready nodes, the earliest stored first (Graph.topological_order);
- "memory": among ready nodes, the one with the smallest net allocation — bytes of
  its new arena outputs minus bytes of the arena values it is the last reader of
  (ties: earliest stored).  Views and constants run as soon as they are ready;
- "memory-eager": as "memory", but outputs read only by in-place updates that the node
  alone holds back count as transient (the update frees them next), so weight
  gradients are not all postponed to the end with every activation gradient alive.

The policies after one whose peak meets a floor no schedule goes below (a step's inputs and
outputs, all placeholders, all fetches) are skipped: they could only tie.

Ops with a ``schedule`` property (the data-parallel collectives), in every policy: an
"asap" node runs as soon as it is ready (right after its last dependency, in-place control
dependencies included: allreduce_start right after the last gradient of its bucket is
written); an "alap" node is held back until nothing else can run (no other ready node, no
on-demand node), so it runs right before its first consumer (allreduce_wait right before
the first update that reads the bucket, after the rest of the backward pass); among several
held back, the earliest stored first.  Alias writers (``opdef.alias``) run after every other
reader of the generation they overwrite (:func:`graphc.compiler._memory.inplace_control_deps`).

Nodes with role "recompute", and gradient nodes that read no gradient (transposes of
activations or weights), run on demand, so each recomputed segment comes right
before the gradient nodes that read it: in "stored", a recompute node takes the place
of the earliest stored node that needs it; in "memory", it runs only when no other node
is ready, and then the one the earliest stored waiting node needs first.
"""

import heapq

from graphc import registry
from graphc.compiler._memory import (
    ARENA,
    MemoryModel,
    fetched_roots,
    inplace_control_deps,
)
from graphc.compiler._rebuild import copy_node, copy_placeholder, copy_variable, new_graph_like, node_types
from graphc.errors import CompileError
from graphc.graph import GRADIENT, RECOMPUTE, is_static, kahn_order

POLICIES = ("stored", "memory", "memory-eager")


def _shapes_known(graph):
    return all(is_static(t.shape) for t in graph.values.values())


class _Prepared:
    """What every policy's list schedule shares: dependencies, step sizes, on-demand nodes."""

    def __init__(self, graph, model):
        nodes = graph.nodes
        n = len(nodes)
        producer = {}
        for i, node in enumerate(nodes):
            for o in node.outputs:
                producer[o] = i
        control = inplace_control_deps(graph, model)
        index = {node.name: i for i, node in enumerate(nodes)} if control else {}
        fetched = fetched_roots(graph, model)
        nbytes, storage, root = model.nbytes, model.storage, model.root
        get_op, producer_of = registry.get_op, producer.get
        # One sweep builds the per-node tables (a node's successors come out in index order).
        preds, succs = [], [[] for _ in range(n)]
        step, reads, alloc, new_roots, inplace, when = [], [], [], [], [], []
        stored_is_topological = True
        for i, node in enumerate(nodes):
            ps = {producer_of(v) for v in node.inputs}
            ps.discard(None)
            names = control.get(node.name)
            if names:
                ps.update(index[name] for name in names)
            preds.append(ps)
            for p in ps:
                succs[p].append(i)
                if p > i:
                    stored_is_topological = False
            opdef = get_op(node.op)
            inplace.append(bool(opdef.inplace))
            when.append(getattr(opdef, "schedule", None))
            if opdef.constant or opdef.view:
                step.append(False)
                reads.append([])
                alloc.append(0)
                new_roots.append(())
            else:
                step.append(True)
                reads.append(model.arena_roots_read(node))
                outs = [o for o in node.outputs if storage[o] == ARENA and root[o] == o]
                new_roots.append(outs)
                alloc.append(sum(nbytes[o] for o in outs))
        left, readers = {}, {}
        for i in range(n):
            for r in reads[i]:
                left[r] = left.get(r, 0) + 1
                readers.setdefault(r, []).append(i)
        # On-demand nodes: recompute copies, and gradient nodes that read no gradient (such as
        # transposes of activations or weights).  "stored": one takes the place of the earliest
        # stored node that needs it (its anchor); "memory": they wait until nothing else is ready.
        # (Kahn's lowest-index-first order is the stored order when that is topological.)
        topo = range(n) if stored_is_topological else _topological(n, preds, succs)
        is_grad = [node.role == GRADIENT for node in nodes]
        grad_dep = [False] * n
        for i in topo:
            for p in preds[i]:
                if grad_dep[p] or is_grad[p]:
                    grad_dep[i] = True
                    break
        recompute = [when[i] is None and (node.role == RECOMPUTE or (is_grad[i] and not grad_dep[i] and bool(succs[i])))
                     for i, node in enumerate(nodes)]
        anchor = list(range(n))
        for i in reversed(topo):
            if recompute[i]:
                anchor[i] = min((anchor[j] for j in succs[i]), default=i)
        self.nodes, self.preds, self.succs, self.step, self.reads, self.alloc = nodes, preds, succs, step, reads, alloc
        self.fetched = fetched
        self.left, self.readers, self.recompute, self.anchor = left, readers, recompute, anchor
        self.inplace = inplace
        self.asap = [w == "asap" for w in when]
        self.alap = [w == "alap" for w in when]
        self.placeholders = [ph.name for ph in graph.inputs]
        # per step: its new arena outputs that no step reads and nobody fetches (dead after it)
        self.unread_outputs = [[o for o in outs if o not in left and o not in fetched] for outs in new_roots]


def schedule_order(graph, policy="memory", model=None, prepared=None, with_peak=False):
    """The nodes of ``graph`` in the order ``policy`` ("stored" or "memory") runs them.
    ``prepared``: the policy-independent part (:class:`_Prepared`), when several policies
    schedule the same graph.  ``with_peak``: return (order, peak_live_bytes of the order),
    the peak counted while scheduling."""
    model = model or MemoryModel(graph)
    prep = prepared or _Prepared(graph, model)
    nodes, preds, succs, step, reads, alloc = prep.nodes, prep.preds, prep.succs, prep.step, prep.reads, prep.alloc
    fetched, readers, recompute, anchor, inplace = prep.fetched, prep.readers, prep.recompute, prep.anchor, prep.inplace
    n = len(nodes)
    waiting = [len(p) for p in preds]
    left = dict(prep.left)  # counts down as readers run
    lazy = recompute if policy.startswith("memory") else [False] * n
    asap, alap = prep.asap, prep.alap

    nbytes = model.nbytes

    def key(i):
        if asap[i]:
            return (-1, 0, i, 0, i)
        if not step[i]:
            return (0, 0, anchor[i], 0, i)
        if policy == "stored":
            return (1, 0, anchor[i], 0 if recompute[i] else 1, i)
        free = 0
        for r in reads[i]:
            if left[r] == 1 and r not in fetched:
                free += nbytes[r]
        new = alloc[i]
        # A weight gradient read only by optimizer updates that wait on nothing else is freed
        # by them right away: count it as transient, or the greedy order would postpone every
        # weight gradient (and keep every activation gradient alive) to the end.
        if policy == "memory-eager" and new and succs[i] and all(inplace[j] and waiting[j] == 1 for j in succs[i]):
            new = 0
        return (1, new - free, i, 1, i)

    done = [False] * n
    in_heap = [False] * n
    # The peak of live arena bytes of this order, as peak_live_bytes counts it, kept while
    # scheduling: placeholders are live from step 0, a step's new outputs from its step, a
    # value dies after its last reading step (fetched ones never); an unread value lives for
    # its own step only.
    live = sum(nbytes[ph] for ph in prep.placeholders)
    peak = [live, live]  # [peak, live bytes now]
    dying = [ph for ph in prep.placeholders if not prep.left.get(ph) and ph not in fetched]
    stamp = [0] * n
    heap, ready_lazy, ready_alap = [], set(), []
    demand = _Demand(nodes, preds, succs)

    def make_ready(i):
        if alap[i]:
            heapq.heappush(ready_alap, i)
        elif lazy[i]:
            ready_lazy.add(i)
        else:
            in_heap[i] = True
            heapq.heappush(heap, (key(i), stamp[i]))

    for i in range(n):
        if waiting[i] == 0:
            make_ready(i)
    order = []

    def run(i):
        done[i] = True
        in_heap[i] = False
        ready_lazy.discard(i)
        order.append(nodes[i])
        if step[i]:
            now = peak[1] + alloc[i]
            if now > peak[0]:
                peak[0] = now
            for r in dying:
                now -= nbytes[r]
            dying.clear()
            for o in prep.unread_outputs[i]:
                now -= nbytes[o]
            peak[1] = now
        for r in reads[i]:
            left[r] -= 1
            if left[r] == 0 and r not in fetched:
                peak[1] -= nbytes[r]
            if left[r] == 1 and policy != "stored":
                for j in readers[r]:
                    if not done[j] and in_heap[j]:
                        stamp[j] += 1
                        heapq.heappush(heap, (key(j), stamp[j]))
        for j in succs[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                make_ready(j)

    while len(order) < n:
        if heap:
            k, s = heapq.heappop(heap)
            i = k[-1]
            if done[i] or s != stamp[i]:
                continue
            run(i)
        elif ready_lazy:
            run(demand.find(done, lazy, ready_lazy, len(order)))
        elif ready_alap:
            run(heapq.heappop(ready_alap))
        else:
            stuck = [nodes[i].name for i in range(n) if not done[i]]
            raise CompileError(f"cannot schedule nodes {stuck[:5]}: a cycle through data or in-place "
                               f"(overwrite-after-read) dependencies")
    if with_peak:
        return order, peak[0]
    return order


def _topological(n, preds, succs):
    order, stuck = kahn_order(succs, [len(p) for p in preds])
    if stuck:
        raise CompileError(f"cannot schedule node indices {stuck[:5]}: a cycle through data or in-place "
                           f"(overwrite-after-read) dependencies")
    return order


class _Demand:
    """The ready lazy node that the earliest stored waiting node needs first: the first ready
    lazy node in the depth-first preorder from that node through its undone predecessors
    (lowest index first), else the lowest ready lazy node.

    A recomputed segment runs one lazy node per search while the same node waits, so the
    search is resumed rather than restarted: when only the node it returned has run since,
    the preorder from the same start differs from the last one only in that node (now done,
    skipped) and in its successors that became ready; the earliest visited of those is the
    answer, else the walk continues where it stopped.  (Restarted each time, the walk over
    the waiting node's whole undone ancestry made a 64-step LSTM's recompute quadratic.)"""

    def __init__(self, nodes, preds, succs):
        self.nodes, self.preds, self.succs = nodes, preds, succs
        self.cursor = 0        # the earliest stored node that is neither done nor lazy: only moves on
        self.first = None      # the start of the current walk
        self.path = []         # [node, index of its next predecessor in kids[node]]
        self.kids = {}         # visited node -> its undone predecessors when visited, ascending
        self.visit = {}        # visited node -> preorder number
        self.visited = []      # the visited nodes in preorder (self.visit's keys, in order)
        self.parent = {}       # visited node -> (the node it was reached from, its index there)
        self.returned = None   # what the last search returned
        self.steps = -1        # how many nodes had run when it returned it

    def find(self, done, lazy, ready_lazy, steps):
        nodes = self.nodes
        first = self.cursor
        while first < len(nodes) and (done[first] or lazy[first]):
            first += 1
        self.cursor = first
        if first == len(nodes):
            return min(ready_lazy)
        r = self.returned
        if first == self.first and steps == self.steps + 1 and r is not None and done[r]:
            found = [j for j in self.succs[r] if j in ready_lazy and j in self.visit]
            if found:
                return self._rewind(min(found, key=self.visit.__getitem__), steps)
        else:
            self.first = first
            self.path, self.kids, self.visit, self.visited, self.parent = [], {}, {}, [], {}
            hit = self._enter(first, None, 0, done, ready_lazy)
            if hit is not None:
                return self._returning(hit, steps)
        path, kids = self.path, self.kids
        while path:
            frame = path[-1]
            node = frame[0]
            if done[node]:
                path.pop()
                continue
            ks = kids[node]
            hit = None
            while frame[1] < len(ks):
                c = ks[frame[1]]
                frame[1] += 1
                if done[c] or c in self.visit:
                    continue
                hit = self._enter(c, node, frame[1] - 1, done, ready_lazy)
                break
            else:
                path.pop()
                continue
            if hit is not None:
                return self._returning(hit, steps)
        self.returned = None
        return min(ready_lazy)

    def _enter(self, i, parent, index, done, ready_lazy):
        """Visit ``i`` (push it on the path); ``i`` when it is the answer."""
        self.visit[i] = len(self.visited)
        self.visited.append(i)
        self.parent[i] = (parent, index)
        self.path.append([i, 0])
        if i in ready_lazy:
            return i
        self.kids[i] = sorted(p for p in self.preds[i] if not done[p])
        return None

    def _returning(self, i, steps):
        self.returned, self.steps = i, steps
        return i

    def _rewind(self, j, steps):
        """Put the walk back to the moment it first visited ``j`` and return ``j``."""
        cut = self.visit[j]
        while len(self.visited) > cut + 1:          # forget what was visited after j
            del self.visit[self.visited.pop()]
        chain = []
        v = j
        while v is not None:
            p, index = self.parent[v]
            if p is not None:
                chain.append([p, index + 1])
            v = p
        self.path = chain[::-1] + [[j, 0]]
        return self._returning(j, steps)


def best_order(graph):
    """The schedule with the lowest peak of live arena bytes among POLICIES, and that peak
    (None when shapes are not all concrete: then the stored order)."""
    order, peak, _ = _best_order(graph)
    return order, peak


def _best_order(graph):
    """best_order, and the graph's MemoryModel (None when shapes are not all concrete)."""
    if not _shapes_known(graph):
        return schedule_order(graph, "stored", _SizeFreeModel(graph)), None, None
    model = MemoryModel(graph)
    prepared = _Prepared(graph, model)
    floor = _peak_floor(graph, model, prepared)
    best = None
    for policy in POLICIES:
        order, peak = schedule_order(graph, policy, model, prepared, with_peak=True)
        if best is None or peak < best[1]:
            best = (order, peak, model)
        if best[1] <= floor:  # no policy can do better, and the first wins a tie
            break
    return best


def _peak_floor(graph, model, prepared):
    """A peak no schedule goes below: a step's arena inputs and new outputs are live at that
    step, every placeholder at the first step, every fetched value at the last."""
    io = max((sum(model.nbytes[r] for r in reads) + alloc for reads, alloc in zip(prepared.reads, prepared.alloc)),
             default=0)
    feeds = sum(model.nbytes[ph.name] for ph in graph.inputs)
    fetched = sum(model.nbytes[r] for r in prepared.fetched)
    return max(io, feeds, fetched)


class _SizeFreeModel(MemoryModel):
    """A MemoryModel for graphs whose shapes are not bound yet: every size is 0."""

    def _size(self, name, graph):
        return 0


def schedule_nodes(graph):
    order, _, model = _best_order(graph)
    if len(order) == len(graph.nodes) and all(a is b for a, b in zip(order, graph.nodes)):
        return graph  # already in schedule order: nothing to copy (passes never mutate a graph)
    out = new_graph_like(graph)
    for ph in graph.inputs:
        copy_placeholder(out, ph)
    for var in graph.variables:
        copy_variable(out, var)
    for node in order:
        copy_node(out, node, node_types(graph, node))
    out.outputs = list(graph.outputs)
    if model is not None:
        model.attach(out)  # the same values and views: assign_buffers need not build it again
    return out

