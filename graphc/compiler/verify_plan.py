"""verify_plan — prove a plan's memory layout safe, independently of the planner.

It reads only the plan (and the registry's ``elementwise`` flags), replays the steps
in order and checks:

- structure: ``graphc.plan.validate_plan`` (indices, sizes, alignment, offsets inside
  the arena), no step writes a VIEW, no ARENA value is written twice, no feed is
  written by a step;
- read before write: every value a step reads (or its view root) is a feed, a
  constant, a variable, or was written by an earlier step; persistent storage that a
  step overwrites (in-place optimizer updates) is not read in its old version after
  the overwrite, and fetched persistent values are the last version;
- no overlap: ARENA values live at the same time (from the step that writes them,
  step 0 for feeds, to the last step that reads them or a view of them, fetched
  values to the end, workspaces at their step) occupy disjoint bytes — the one
  exception is an elementwise step writing its output over the exact bytes of a direct
  input (same dtype and size) that dies at that step;
- frees: each value listed in ``steps[s].frees`` is an ARENA value that is dead
  after step ``s`` (not fetched, not read later, bytes not taken over in place).

Raises :class:`PlanVerificationError` (a CompileError) naming the values, their byte
ranges and live steps.  ``verify_plan`` returns the replayed liveness
(``{value index: (start, end)}``) for tests.
"""

import bisect

from graphc import registry
from graphc._proto import graphc_pb2 as pb
from graphc.errors import CompileError, GraphError, ModelFormatError
from graphc.plan import validate_plan  # the runtime side's structural checks


class PlanVerificationError(CompileError):
    """A plan's memory layout is unsafe (overlap, read before write, stale read...)."""


def _proto(plan):
    return plan.proto if hasattr(plan, "proto") else plan


def verify_plan(plan):
    """Check a Plan (or graphc_pb2.Plan); raises PlanVerificationError, else returns the
    live interval of every ARENA root value."""
    p = _proto(plan)
    try:
        validate_plan(p, "plan")
    except ModelFormatError as e:
        raise PlanVerificationError(str(e)) from None
    values = p.values
    nsteps = len(p.steps)
    last = max(nsteps - 1, 0)

    def name(i):
        return f"{values[i].name!r}"

    def root(i):
        return values[i].alias_of if values[i].storage == pb.VIEW else i

    feeds = set(p.feeds)
    fetched_roots = {root(i) for i in p.fetches}
    workspace_step = {}
    for s, step in enumerate(p.steps):
        for w in step.workspaces:
            if values[w].storage != pb.ARENA or w in workspace_step or w in feeds:
                raise PlanVerificationError(f"steps[{s}] ({step.node!r}): workspace {name(w)} must be an ARENA "
                                            f"value owned by one step")
            workspace_step[w] = s

    # -- replay: writes, reads, versions of persistent storage ---------------------------
    written = {i: -1 for i in feeds}                      # ARENA root → step that wrote it
    version = {}                                          # PERSISTENT value → step that wrote it
    writes_of = {}                                        # persistent index → [steps]
    for i, v in enumerate(values):
        if v.storage == pb.PERSISTENT and v.name == p.persistent[v.index].name:
            version[i] = -1
    start, end = {}, {}
    for i in feeds:
        start[i] = end[i] = 0
    for w, s in workspace_step.items():
        start[w] = end[w] = s
        written[w] = s - 1  # usable during its step
    inplace_pairs = {}                                    # step → {output: input whose bytes it took}
    for s, step in enumerate(p.steps):
        where = f"steps[{s}] ({step.op} {step.node!r})"
        for i in step.inputs:
            r = root(i)
            st = values[r].storage
            if st == pb.ARENA:
                if r not in written or written[r] >= s:
                    raise PlanVerificationError(f"{where} reads {name(i)} before any step writes it")
                end[r] = max(end[r], s)
            elif st == pb.PERSISTENT:
                if r not in version or version[r] >= s:
                    raise PlanVerificationError(f"{where} reads persistent {name(i)} before any step writes it")
                later = [w for w in writes_of.get(values[r].index, []) if version[r] < w < s]
                if later:
                    raise PlanVerificationError(
                        f"{where} reads {name(i)} (persistent[{values[r].index}] as written at step "
                        f"{version[r]}), but steps[{later[0]}] ({p.steps[later[0]].node!r}) overwrote it before")
        for o in step.outputs:
            st = values[o].storage
            if st == pb.VIEW:
                raise PlanVerificationError(f"{where} writes view {name(o)}; views have no step")
            if st == pb.ARENA:
                if o in written:
                    raise PlanVerificationError(f"{where} writes {name(o)}, which "
                                                f"{'is a feed' if o in feeds else 'an earlier step wrote'}")
                written[o] = s
                start[o] = end[o] = s
            elif st == pb.PERSISTENT:
                if o in version:
                    raise PlanVerificationError(f"{where} writes persistent {name(o)} a second time")
                version[o] = s
                writes_of.setdefault(values[o].index, []).append(s)
        try:
            elementwise = registry.get_op(step.op).elementwise
        except GraphError:
            raise PlanVerificationError(f"{where}: unknown op {step.op!r}") from None
        if elementwise:
            for o in step.outputs:
                vo = values[o]
                for i in step.inputs:
                    vi = values[i]
                    if (vi.storage == pb.ARENA and vo.storage == pb.ARENA and i != o and vo.nbytes
                            and vi.offset == vo.offset and vi.nbytes == vo.nbytes and vi.dtype == vo.dtype):
                        inplace_pairs.setdefault(s, {})[o] = i
    for i in p.fetches:
        r = root(i)
        st = values[r].storage
        if st == pb.ARENA and r not in written:
            raise PlanVerificationError(f"fetch {name(i)} is never written")
        if st == pb.PERSISTENT:
            if r not in version:
                raise PlanVerificationError(f"fetch {name(i)} is never written")
            later = [w for w in writes_of.get(values[r].index, []) if w > version[r]]
            if later:
                raise PlanVerificationError(
                    f"fetch {name(i)} would return persistent[{values[r].index}] after steps[{later[0]}] "
                    f"({p.steps[later[0]].node!r}) overwrote it")
        if r in end:
            end[r] = last
    arena = [i for i, v in enumerate(values) if v.storage == pb.ARENA]
    for i in arena:
        if i not in written:
            start[i] = end[i] = 0   # never written nor read: occupies its bytes at step 0 only
        v = values[i]
        if v.offset % 64 or v.offset + v.nbytes > p.arena_bytes:
            raise PlanVerificationError(f"{name(i)}: bytes [{v.offset}, {v.offset + v.nbytes}) are not an "
                                        f"aligned range inside the arena of {p.arena_bytes} bytes")
    # A takeover is real only if the input dies at that step and is not fetched.
    taken = {}
    taken_inputs = set()  # taken's values, kept as a set so the check stays O(1)
    for s, pairs in inplace_pairs.items():
        for o, i in pairs.items():
            if end.get(i) == s and i not in fetched_roots and i not in taken_inputs:
                taken[o] = i
                taken_inputs.add(i)

    # -- sweep: values live at one time occupy disjoint bytes ---------------------------
    born = {}
    for i in arena:
        born.setdefault(start[i], []).append(i)
    died = {}
    for i in arena:
        died.setdefault(end[i], []).append(i)
    alive = []   # sorted (lo, hi, index), pairwise disjoint

    def insert(i, s):
        v = values[i]
        if v.nbytes == 0:
            return
        lo, hi = v.offset, v.offset + v.nbytes
        k = bisect.bisect_left(alive, (lo, hi, i))
        for j in (k - 1, k):
            if 0 <= j < len(alive):
                a_lo, a_hi, other = alive[j]
                if a_lo < hi and lo < a_hi:
                    raise PlanVerificationError(
                        f"at step {s}, {name(i)} bytes [{lo}, {hi}) live steps {start[i]}..{end[i]} overlap "
                        f"{name(other)} bytes [{a_lo}, {a_hi}) live steps {start[other]}..{end[other]}")
        alive.insert(k, (lo, hi, i))

    def remove(i):
        v = values[i]
        if v.nbytes:
            key = (v.offset, v.offset + v.nbytes, i)
            k = bisect.bisect_left(alive, key)
            if k < len(alive) and alive[k] == key:
                del alive[k]

    removed = set()
    for s in range(max(nsteps, 1)):
        for i in sorted(born.get(s, []), key=lambda i: (i not in feeds, i)):
            if i in taken:
                remove(taken[i])
                removed.add(taken[i])
            insert(i, s)
        for i in died.get(s, []):
            if i not in removed:
                remove(i)

    # -- frees --------------------------------------------------------------------------
    for s, step in enumerate(p.steps):
        for i in step.frees:
            if not 0 <= i < len(values) or values[i].storage != pb.ARENA:
                raise PlanVerificationError(f"steps[{s}] ({step.node!r}) frees value {i}, not an ARENA value")
            if i in fetched_roots or end[i] != s or i in taken_inputs:
                why = ("it is fetched" if i in fetched_roots else
                       f"it is live until step {end[i]}" if end[i] != s else "an output took its bytes over")
                raise PlanVerificationError(f"steps[{s}] ({step.node!r}) frees {name(i)}, but {why}")
    return {i: (start[i], end[i]) for i in arena}
