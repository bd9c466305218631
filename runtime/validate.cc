#include "validate.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <iterator>
#include <map>
#include <stdexcept>
#include <unordered_set>

#include "errors.h"
#include "kernel_registry.h"  // format_dims
#include "op_schema.h"

namespace graphc {

std::string shorten(const std::string& text, size_t limit) {
  if (text.size() <= limit) return text;
  return text.substr(0, limit) + "... (" + std::to_string(text.size()) + " bytes)";
}

uint64_t physical_memory_bytes() {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return UINT64_MAX;
  uint64_t total;
  if (__builtin_mul_overflow(static_cast<uint64_t>(pages), static_cast<uint64_t>(page), &total)) {
    return UINT64_MAX;
  }
  return total;
}

bool default_inplace_ok(const std::string& op) {
  const schema::OpInfo* info = schema::find_op(op);
  return info != nullptr && info->elementwise;
}

int alias_input(const std::string& op, size_t output) {
  const schema::OpInfo* info = schema::find_op(op);
  return info == nullptr ? -1 : schema::alias_input(*info, static_cast<int>(output));
}

void set_inplace_ops(Limits* limits, const std::vector<std::string>& ops) {
  std::unordered_set<std::string> names(ops.begin(), ops.end());
  limits->inplace_ok = [names](const std::string& op) { return names.count(op) != 0; };
}

bool tensor_nbytes(const std::vector<int64_t>& dims, DType dtype, uint64_t* nbytes) {
  if (!dtype_valid(dtype)) return false;
  int64_t nonzero = static_cast<int64_t>(dtype_size(dtype));
  bool empty = false;
  for (int64_t d : dims) {
    if (d < 0) return false;
    if (d == 0) {
      empty = true;
      continue;
    }
    if (__builtin_mul_overflow(nonzero, d, &nonzero)) return false;
  }
  *nbytes = empty ? 0 : static_cast<uint64_t>(nonzero);
  return true;
}

namespace {

const char* storage_name(Storage s) {
  switch (s) {
    case Storage::Arena: return "arena";
    case Storage::Persistent: return "persistent";
    case Storage::Constant: return "constant";
    case Storage::View: return "view";
  }
  return "invalid";
}

bool storage_valid(Storage s) {
  int32_t k = static_cast<int32_t>(s);
  return k >= 0 && k <= 3;
}

std::string range(uint64_t lo, uint64_t nbytes) {
  return "[" + std::to_string(lo) + ", " + std::to_string(lo + nbytes) + ")";
}

class Validator {
 public:
  Validator(const PlanDesc& p, const Limits& limits) : p_(p), limits_(limits), nv_(p.values.size()) {}

  void run() {
    check_tensors(p_.persistent, "persistent", true);
    check_tensors(p_.constants, "constant", false);
    check_values();
    check_steps();
    check_feeds_and_fetches();
    check_memory();
    check_liveness();
  }

 private:
  [[noreturn]] void bad(const std::string& msg) const { throw std::invalid_argument(msg); }

  std::string vname(int32_t i) const {
    return "value " + std::to_string(i) + " ('" + shorten(p_.values[i].name) + "')";
  }
  std::string slabel(size_t s) const {
    const StepDesc& st = p_.steps[s];
    return "step " + std::to_string(s) + " (node '" + shorten(st.node) + "', op '" + shorten(st.op) + "')";
  }

  void check_index(int32_t idx, const std::string& what) const {
    if (idx < 0 || static_cast<size_t>(idx) >= nv_) {
      bad(what + " refers to value " + std::to_string(idx) + ", outside [0, " + std::to_string(nv_) + ")");
    }
  }

  void check_tensors(const std::vector<TensorData>& list, const char* kind, bool allow_empty) {
    for (size_t i = 0; i < list.size(); ++i) {
      const TensorData& t = list[i];
      const std::string what = std::string(kind) + " " + std::to_string(i) + " ('" + shorten(t.name) + "')";
      if (!dtype_valid(t.dtype)) {
        bad(what + " has an invalid dtype code " + std::to_string(static_cast<int32_t>(t.dtype)));
      }
      uint64_t nbytes = 0;
      if (!tensor_nbytes(t.dims, t.dtype, &nbytes)) {
        bad(what + " has invalid dims " + format_dims(t.dims) + " (negative, or its size overflows int64)");
      }
      if (t.bytes.size() != nbytes && !(allow_empty && t.bytes.empty())) {
        bad(what + " has " + std::to_string(t.bytes.size()) + " bytes of data, expected " + std::to_string(nbytes));
      }
    }
  }

  void check_values() {
    std::unordered_set<std::string> names;
    names.reserve(nv_ * 2);
    for (size_t k = 0; k < nv_; ++k) {
      const int32_t i = static_cast<int32_t>(k);
      const ValueDesc& v = p_.values[k];
      const std::string what = vname(i);
      if (v.name.empty() || !names.insert(v.name).second) bad(what + ": value names must be unique and non-empty");
      if (!dtype_valid(v.dtype)) {
        bad(what + " has an invalid dtype code " + std::to_string(static_cast<int32_t>(v.dtype)));
      }
      uint64_t nbytes = 0;
      if (!tensor_nbytes(v.dims, v.dtype, &nbytes)) {
        bad(what + " has invalid dims " + format_dims(v.dims) + " (negative, or its size overflows int64)");
      }
      if (v.nbytes != nbytes) {
        bad(what + " claims " + std::to_string(v.nbytes) + " bytes, but " + dtype_name(v.dtype) +
            format_dims(v.dims) + " is " + std::to_string(nbytes));
      }
      if (!storage_valid(v.storage)) {
        bad(what + " has an unknown storage kind " + std::to_string(static_cast<int32_t>(v.storage)));
      }
      switch (v.storage) {
        case Storage::Arena:
          if (v.offset % kArenaAlignment != 0) {
            bad(what + " has arena offset " + std::to_string(v.offset) + ", not 64-byte aligned");
          }
          if (v.offset > p_.arena_bytes || v.nbytes > p_.arena_bytes - v.offset) {
            bad(what + " spans bytes [" + std::to_string(v.offset) + ", +" + std::to_string(v.nbytes) +
                ") outside the arena of " + std::to_string(p_.arena_bytes) + " bytes");
          }
          break;
        case Storage::Persistent:
        case Storage::Constant: {
          const bool pers = v.storage == Storage::Persistent;
          const auto& list = pers ? p_.persistent : p_.constants;
          const char* kind = pers ? "persistent" : "constant";
          if (v.index < 0 || static_cast<size_t>(v.index) >= list.size()) {
            bad(what + " refers to " + kind + " " + std::to_string(v.index) + ", outside [0, " +
                std::to_string(list.size()) + ")");
          }
          const TensorData& t = list[v.index];
          uint64_t tbytes = 0;
          tensor_nbytes(t.dims, t.dtype, &tbytes);  // checked in check_tensors
          // Same dtype and size: the bytes mean the same thing (a writer may spell a
          // scalar as dims [] or [1]).
          if (t.dtype != v.dtype || tbytes != v.nbytes) {
            bad(what + " is " + dtype_name(v.dtype) + format_dims(v.dims) + " but its " + kind + " tensor is " +
                dtype_name(t.dtype) + format_dims(t.dims));
          }
          break;
        }
        case Storage::View: {
          if (v.alias_of < 0 || static_cast<size_t>(v.alias_of) >= nv_ || v.alias_of == i) {
            bad(what + ": a view's alias_of " + std::to_string(v.alias_of) + " is not another value (there are " +
                std::to_string(nv_) + ")");
          }
          const ValueDesc& root = p_.values[v.alias_of];
          if (root.storage == Storage::View) {
            bad(what + ": alias_of must name a root value, not another view (" + vname(v.alias_of) + ")");
          }
          if (root.nbytes != v.nbytes) {
            bad(what + ": a view of " + std::to_string(v.nbytes) + " bytes cannot alias " + vname(v.alias_of) +
                " of " + std::to_string(root.nbytes) + " bytes");
          }
          break;
        }
      }
    }
  }

  void check_steps() {
    for (size_t s = 0; s < p_.steps.size(); ++s) {
      const StepDesc& st = p_.steps[s];
      if (st.op.empty()) bad("step " + std::to_string(s) + " has no op");
      for (int32_t idx : st.inputs) check_index(idx, slabel(s) + " input");
      for (size_t k = 0; k < st.outputs.size(); ++k) {
        const int32_t idx = st.outputs[k];
        check_index(idx, slabel(s) + " output");
        Storage so = p_.values[idx].storage;
        if (so == Storage::View) {
          // A view the step writes in place: its op declares output k an alias of an input.
          const int j = alias_input(st.op, k);
          if (j >= 0) {
            if (static_cast<size_t>(j) >= st.inputs.size()) {
              bad(slabel(s) + " writes " + vname(idx) + " in place through input " + std::to_string(j) +
                  ", but the step has " + std::to_string(st.inputs.size()) + " inputs");
            }
            const int32_t r = root(st.inputs[j]);
            if (p_.values[r].storage != Storage::Arena) {
              bad(slabel(s) + " writes " + vname(idx) + " in place through input " + std::to_string(j) + " (" +
                  vname(st.inputs[j]) + "), which is not an arena value");
            }
            if (p_.values[idx].alias_of != r) {
              bad(slabel(s) + " writes " + vname(idx) + " in place through input " + std::to_string(j) +
                  ", so the view must alias that input's root " + vname(r) + ", not value " +
                  std::to_string(p_.values[idx].alias_of));
            }
            continue;
          }
        }
        if (so == Storage::Constant || so == Storage::View) {
          bad(slabel(s) + " writes " + vname(idx) + ", which is a read-only " + storage_name(so) +
              (so == Storage::View ? " (views have no step of their own)" : ""));
        }
      }
      for (int32_t idx : st.frees) {
        check_index(idx, slabel(s) + " frees");
        if (p_.values[idx].storage != Storage::Arena) {
          bad(slabel(s) + " frees " + vname(idx) + ", which is not an arena value");
        }
      }
      for (int32_t idx : st.workspaces) {
        check_index(idx, slabel(s) + " workspace");
        if (p_.values[idx].storage != Storage::Arena) {
          bad(slabel(s) + " has workspace " + vname(idx) + ", which is not an arena value");
        }
      }
    }
  }

  void check_feeds_and_fetches() {
    std::vector<char> fed(nv_, 0);
    for (size_t k = 0; k < p_.feeds.size(); ++k) {
      int32_t idx = p_.feeds[k];
      check_index(idx, "feed " + std::to_string(k));
      if (p_.values[idx].storage != Storage::Arena) {
        bad("feed " + std::to_string(k) + " " + vname(idx) + " must live in the arena, not be a " +
            storage_name(p_.values[idx].storage) + " value");
      }
      if (fed[idx]) bad("feed " + std::to_string(k) + " " + vname(idx) + " is listed twice");
      fed[idx] = 1;
    }
    for (size_t k = 0; k < p_.fetches.size(); ++k) check_index(p_.fetches[k], "fetch " + std::to_string(k));
  }

  void check_memory() {
    const uint64_t limit = limits_.memory_limit ? limits_.memory_limit : physical_memory_bytes();
    uint64_t total = p_.arena_bytes;
    bool overflow = false;
    for (const auto* list : {&p_.persistent, &p_.constants}) {
      for (const TensorData& t : *list) {
        uint64_t nbytes = 0;
        tensor_nbytes(t.dims, t.dtype, &nbytes);
        overflow |= __builtin_add_overflow(total, nbytes, &total);
      }
    }
    if (overflow || total > limit) {
      throw ResourceError("the plan needs " + (overflow ? std::string("more than 2^64") : std::to_string(total)) +
                          " bytes (arena " + std::to_string(p_.arena_bytes) +
                          " + persistent + constants), above the memory limit of " + std::to_string(limit) +
                          " bytes" + (limits_.memory_limit ? "" : " (the machine's physical memory)") +
                          "; raise it with memory_limit= or GRAPHC_MEMORY_LIMIT");
    }
  }

  int32_t root(int32_t i) const {
    const ValueDesc& v = p_.values[i];
    return v.storage == Storage::View ? v.alias_of : i;
  }

  // The replay of graphc/compiler/verify_plan.py, in the same order, with the same rules.
  void check_liveness() {
    constexpr int64_t kUnwritten = INT64_MIN;
    const size_t nsteps = p_.steps.size();
    const int64_t last = nsteps ? static_cast<int64_t>(nsteps) - 1 : 0;
    auto inplace_ok = limits_.inplace_ok ? limits_.inplace_ok : default_inplace_ok;

    std::vector<char> is_feed(nv_, 0), fetched_root(nv_, 0), is_workspace(nv_, 0);
    for (int32_t i : p_.feeds) is_feed[i] = 1;
    for (int32_t i : p_.fetches) fetched_root[root(i)] = 1;
    std::vector<int64_t> written(nv_, kUnwritten);  // ARENA: the step that wrote it
    std::vector<int64_t> version(nv_, kUnwritten);  // PERSISTENT value: the step that wrote it
    std::vector<int64_t> last_write(p_.persistent.size(), -1);  // persistent index: latest writer
    std::vector<int64_t> start(nv_, 0), end(nv_, 0);
    for (int32_t i : p_.feeds) written[i] = -1;
    for (size_t s = 0; s < nsteps; ++s) {
      for (int32_t w : p_.steps[s].workspaces) {
        if (is_workspace[w] || is_feed[w]) {
          bad(slabel(s) + ": workspace " + vname(w) + " must be an arena value owned by one step");
        }
        is_workspace[w] = 1;
        start[w] = end[w] = static_cast<int64_t>(s);
        written[w] = static_cast<int64_t>(s) - 1;  // usable during its step
      }
    }
    for (size_t k = 0; k < nv_; ++k) {
      const ValueDesc& v = p_.values[k];
      if (v.storage == Storage::Persistent && v.name == p_.persistent[v.index].name) version[k] = -1;
    }
    // Alias writes: the view written in place by one step, into a computed arena root.
    std::vector<int64_t> view_writer(nv_, -1);
    std::map<std::vector<int32_t>, size_t> started;  // outputs of a split-phase start → its step
    std::vector<int64_t> completer(nv_, -1);          // a started view → the step completing it (its only reader)
    for (size_t s = 0; s < nsteps; ++s) {
      const StepDesc& st = p_.steps[s];
      for (int32_t o : st.outputs) {
        if (p_.values[o].storage != Storage::View) continue;
        const int32_t r = p_.values[o].alias_of;
        if (view_writer[o] >= 0) {
          bad(slabel(s) + " writes view " + vname(o) + ", which " + slabel(static_cast<size_t>(view_writer[o])) +
              " writes");
        }
        if (is_feed[r] || is_workspace[r]) {
          bad(slabel(s) + " writes in place into " + vname(r) + ", which is " + (is_feed[r] ? "a feed" : "a workspace"));
        }
        view_writer[o] = static_cast<int64_t>(s);
      }
      const schema::OpInfo* info = schema::find_op(st.op);
      const bool alias = info != nullptr && (info->alias_each || info->num_alias > 0);
      if (!st.inputs.empty() && info != nullptr && info->contiguous_inputs) {
        check_contiguous(s);
        if (alias && started.erase(st.inputs) != 0) {  // completes a split-phase start
          for (int32_t o : st.inputs) completer[o] = static_cast<int64_t>(s);
        }
      }
      if (alias && info->contiguous_inputs && info->schedule == schema::Schedule::Asap) started.emplace(st.outputs, s);
    }
    if (!started.empty()) {
      size_t first = nsteps;
      for (const auto& kv : started) first = std::min(first, kv.second);
      bad(slabel(first) + " starts writing its inputs in place, but no later step completes it (a step of a "
          "contiguous_inputs alias op taking its outputs, in order): the bytes could be reused while the "
          "collective still writes them");
    }
    std::vector<int64_t> generation(nv_, -1);  // ARENA root: the latest step that wrote it in place
    // (output, input whose exact bytes it may take over), per step.
    std::vector<std::vector<std::pair<int32_t, int32_t>>> inplace(nsteps);
    for (size_t s = 0; s < nsteps; ++s) {
      const StepDesc& st = p_.steps[s];
      const int64_t si = static_cast<int64_t>(s);
      for (int32_t i : st.inputs) {
        const int32_t r = root(i);
        const Storage sr = p_.values[r].storage;
        if (sr == Storage::Arena) {
          if (written[r] == kUnwritten || written[r] >= si) bad(slabel(s) + " reads " + vname(i) + " before any step writes it");
          if (end[r] < si) end[r] = si;
          const int64_t w = view_writer[i];
          if (w >= si) bad(slabel(s) + " reads " + vname(i) + " before " + slabel(static_cast<size_t>(w)) + " writes it in place");
          if (completer[i] >= 0 && completer[i] != si) {
            bad(slabel(s) + " reads " + vname(i) + ", which " + slabel(static_cast<size_t>(w)) +
                " started writing in place; only " + slabel(static_cast<size_t>(completer[i])) +
                ", which completes it, may read it");
          }
          const int64_t g = generation[r];
          if (g >= 0 && (i == r || w >= 0) && w < g) {
            bad(slabel(s) + " reads " + vname(i) + ", but " + slabel(static_cast<size_t>(g)) + " overwrote " + vname(r) +
                " in place before");
          }
        } else if (sr == Storage::Persistent) {
          if (version[r] == kUnwritten || version[r] >= si) {
            bad(slabel(s) + " reads persistent " + vname(i) + " before any step writes it");
          }
          const int64_t lw = last_write[p_.values[r].index];
          if (lw > version[r]) {
            bad(slabel(s) + " reads " + vname(i) + " (persistent " + std::to_string(p_.values[r].index) +
                " as written at step " + std::to_string(version[r]) + "), but " + slabel(static_cast<size_t>(lw)) +
                " overwrote it before");
          }
        }
      }
      for (int32_t o : st.outputs) {
        const ValueDesc& vo = p_.values[o];
        if (vo.storage == Storage::Arena) {
          if (written[o] != kUnwritten) {
            bad(slabel(s) + " writes " + vname(o) + ", which " +
                (is_feed[o] ? "is a feed" : is_workspace[o] ? "is a workspace" : "an earlier step wrote"));
          }
          written[o] = si;
          start[o] = end[o] = si;
        } else if (vo.storage == Storage::Persistent) {
          if (version[o] != kUnwritten) bad(slabel(s) + " writes persistent " + vname(o) + " a second time");
          version[o] = si;
          last_write[vo.index] = si;
        } else if (vo.storage == Storage::View) {
          generation[vo.alias_of] = si;
        }
      }
      if (!st.outputs.empty() && !st.inputs.empty() && inplace_ok(st.op)) {
        for (int32_t o : st.outputs) {
          const ValueDesc& vo = p_.values[o];
          if (vo.storage != Storage::Arena || vo.nbytes == 0) continue;
          int32_t taken = -1;
          for (int32_t i : st.inputs) {
            const ValueDesc& vi = p_.values[i];
            if (vi.storage == Storage::Arena && i != o && vi.offset == vo.offset && vi.nbytes == vo.nbytes &&
                vi.dtype == vo.dtype) {
              taken = i;  // the last such input, as in verify_plan
            }
          }
          if (taken >= 0) inplace[s].emplace_back(o, taken);
        }
      }
    }
    for (int32_t i : p_.fetches) {
      const int32_t r = root(i);
      const ValueDesc& vr = p_.values[r];
      if (vr.storage == Storage::Arena) {
        if (written[r] == kUnwritten) bad("fetch " + vname(i) + " is never written");
        end[r] = last;
      } else if (vr.storage == Storage::Persistent) {
        if (version[r] == kUnwritten) bad("fetch " + vname(i) + " is never written");
        if (last_write[vr.index] > version[r]) {
          bad("fetch " + vname(i) + " would return persistent " + std::to_string(vr.index) + " after " +
              slabel(static_cast<size_t>(last_write[vr.index])) + " overwrote it");
        }
      }
    }
    for (size_t k = 0; k < nv_; ++k) {
      if (p_.values[k].storage == Storage::Arena && written[k] == kUnwritten) start[k] = end[k] = 0;
    }
    // A takeover is real only if the input dies at that step and is not fetched.
    std::vector<int32_t> taken_by(nv_, -1);  // output → the input whose bytes it took
    std::vector<char> taken_input(nv_, 0);
    for (size_t s = 0; s < nsteps; ++s) {
      for (const auto& oi : inplace[s]) {
        const int32_t o = oi.first, i = oi.second;
        if (end[i] == static_cast<int64_t>(s) && !fetched_root[i] && !taken_input[i] && taken_by[o] < 0) {
          taken_by[o] = i;
          taken_input[i] = 1;
        }
      }
    }
    sweep(start, end, is_feed, taken_by, nsteps);
    for (size_t s = 0; s < nsteps; ++s) {
      for (int32_t i : p_.steps[s].frees) {
        if (fetched_root[i]) bad(slabel(s) + " frees " + vname(i) + ", but it is fetched");
        if (end[i] != static_cast<int64_t>(s)) {
          bad(slabel(s) + " frees " + vname(i) + ", but it is live until step " + std::to_string(end[i]));
        }
        if (taken_input[i]) bad(slabel(s) + " frees " + vname(i) + ", but an output took its bytes over");
      }
    }
  }

  // The roots of a contiguous_inputs step's inputs: distinct arena values, each at the first
  // 64-byte aligned offset after the previous one's end, so the one range the kernel reduces
  // holds only them and padding that no value can own.
  void check_contiguous(size_t s) const {
    const StepDesc& st = p_.steps[s];
    std::unordered_set<int32_t> seen;
    for (size_t k = 0; k < st.inputs.size(); ++k) {
      const int32_t r = root(st.inputs[k]);
      const ValueDesc& v = p_.values[r];
      if (v.storage != Storage::Arena) {
        bad(slabel(s) + " needs its inputs back to back in the arena, but input " + std::to_string(k) + " (" +
            vname(st.inputs[k]) + ") is not an arena value");
      }
      if (!seen.insert(r).second) bad(slabel(s) + " names the bytes of " + vname(r) + " twice among its contiguous inputs");
      if (k == 0) continue;
      const int32_t pr = root(st.inputs[k - 1]);
      const ValueDesc& prev = p_.values[pr];
      // offsets and sizes are inside the arena (check_values), so this cannot overflow
      const uint64_t expected = (prev.offset + prev.nbytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
      if (v.offset != expected) {
        bad(slabel(s) + " needs its inputs back to back in the arena, but input " + std::to_string(k) + " (" +
            vname(st.inputs[k]) + ") is at offset " + std::to_string(v.offset) + ", not " + std::to_string(expected) +
            " (input " + std::to_string(k - 1) + " " + vname(pr) + " is bytes " + range(prev.offset, prev.nbytes) + ")");
      }
    }
  }

  // Values live at one time occupy disjoint bytes: a sweep over the steps with the live
  // byte ranges in an ordered map (lo → (hi, value)), pairwise disjoint.
  void sweep(const std::vector<int64_t>& start, const std::vector<int64_t>& end, const std::vector<char>& is_feed,
             const std::vector<int32_t>& taken_by, size_t nsteps) {
    const size_t nbuckets = nsteps ? nsteps : 1;
    std::vector<std::vector<int32_t>> born(nbuckets), died(nbuckets);
    for (size_t k = 0; k < nv_; ++k) {
      if (p_.values[k].storage != Storage::Arena || p_.values[k].nbytes == 0) continue;
      born[static_cast<size_t>(start[k])].push_back(static_cast<int32_t>(k));
      died[static_cast<size_t>(end[k])].push_back(static_cast<int32_t>(k));
    }
    std::map<uint64_t, std::pair<uint64_t, int32_t>> alive;
    std::vector<char> removed(nv_, 0);
    auto remove = [&](int32_t i) {
      auto it = alive.find(p_.values[i].offset);
      if (it != alive.end() && it->second.second == i) alive.erase(it);
    };
    auto describe = [&](int32_t i, uint64_t lo, uint64_t hi) {
      return vname(i) + " bytes [" + std::to_string(lo) + ", " + std::to_string(hi) + ") live steps " +
             std::to_string(start[i]) + ".." + std::to_string(end[i]);
    };
    for (size_t s = 0; s < nbuckets; ++s) {
      auto& b = born[s];
      // Feeds first, then by index (verify_plan's order, so both name the same pair).
      std::stable_partition(b.begin(), b.end(), [&](int32_t i) { return is_feed[i] != 0; });
      for (int32_t i : b) {
        if (taken_by[i] >= 0) {
          remove(taken_by[i]);
          removed[taken_by[i]] = 1;
        }
        const uint64_t lo = p_.values[i].offset, hi = lo + p_.values[i].nbytes;
        auto next = alive.lower_bound(lo);
        if (next != alive.end() && next->first < hi) {
          bad("at step " + std::to_string(s) + ", " + describe(i, lo, hi) + " overlap " +
              describe(next->second.second, next->first, next->second.first));
        }
        if (next != alive.begin()) {
          auto prev = std::prev(next);
          if (prev->second.first > lo) {
            bad("at step " + std::to_string(s) + ", " + describe(i, lo, hi) + " overlap " +
                describe(prev->second.second, prev->first, prev->second.first));
          }
        }
        alive.emplace_hint(next, lo, std::make_pair(hi, i));
      }
      for (int32_t i : died[s]) {
        if (!removed[i]) remove(i);
      }
    }
  }

  const PlanDesc& p_;
  const Limits& limits_;
  const size_t nv_;
};

}  // namespace

void validate_plan(const PlanDesc& plan, const Limits& limits) { Validator(plan, limits).run(); }

}  // namespace graphc
