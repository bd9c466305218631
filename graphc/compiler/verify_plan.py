"""verify_plan — prove a plan's memory layout safe, independently of the planner.

It reads only the plan (and the registry's ``elementwise``, ``alias`` and
``contiguous_inputs`` properties), replays the steps
in order and checks (the replay is ``graphc.plan.check_memory_layout``, the Python twin
of the runtime's C++ validator, so the compiler, ``gc.load_plan`` and the runtime hold
plans to one set of rules):

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
  after step ``s`` (not fetched, not read later, bytes not taken over in place);
- alias writes (the data-parallel collectives: a step writes VIEW outputs in place, which
  its op's registry ``alias`` allows): the view aliases the written input's ARENA root,
  not a feed nor a workspace, is written by one step and read only after it, and no step
  reads a generation of the root older than the latest in-place write;
- contiguous inputs (``contiguous_inputs`` ops: a gradient bucket): the inputs' roots are
  distinct ARENA values back to back, each at the first 64-byte aligned offset after the
  previous one's end (a plan claiming a bucket that is not contiguous is refused, so the
  kernel never reduces bytes another value owns).

Raises :class:`PlanVerificationError` (a CompileError) naming the values, their byte
ranges and live steps.  ``verify_plan`` returns the replayed liveness
(``{value index: (start, end)}``) for tests.
"""

from graphc.errors import CompileError, ModelFormatError
from graphc.plan import check_memory_layout, validate_plan


class PlanVerificationError(CompileError):
    """A plan's memory layout is unsafe (overlap, read before write, stale read...)."""


def _proto(plan):
    return plan.proto if hasattr(plan, "proto") else plan


def verify_plan(plan):
    """Check a Plan (or graphc_pb2.Plan); raises PlanVerificationError, else returns the
    live interval of every ARENA value: ``{value index: (first step, last step)}``."""
    p = _proto(plan)
    try:
        validate_plan(p, "plan", layout=False)
        return check_memory_layout(p, "plan")
    except ModelFormatError as e:
        raise PlanVerificationError(str(e)) from None
