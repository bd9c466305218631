// fused_program.cc — parse and run a fused op's elementwise program (fused_program.h), and
// the fused_elementwise kernel.
#include "fused_program.h"

#include <cerrno>
#include <clocale>
#include <cstdlib>
#include <cstring>

#include "elementwise_ops.h"

namespace graphc {
namespace cpu {
namespace {

struct Arg {
  enum Kind { Input, Reg, Product } kind = Input;
  int index = 0;
};

struct Stmt {
  EwOp op = EwOp::Add;
  double exponent = 0.0;  // pow's attr
  Arg args[2];
  int nargs = 0;
};

// Non-negative decimal integer (at most 9 digits, so no overflow); -1 when s is not one.
int parse_index(const std::string& s) {
  if (s.empty() || s.size() > 9) return -1;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

// `text` as a double, whole, written as Python's float repr writes it ('.' for the decimal point:
// 1.5, 1e-05, inf, nan, -0.0), exactly (strtod rounds correctly), whatever the C locale: strtod
// reads the decimal point of LC_NUMERIC, which a program that runs the kernels (an AOT
// artifact's host, or Python after locale.setlocale) may have set to ','.  false when `text`
// is not a number.
bool parse_double(const std::string& text, double* out) {
  if (text.empty()) return false;
  std::string s = text;
  const std::lconv* lc = std::localeconv();
  const char* point = lc != nullptr && lc->decimal_point != nullptr ? lc->decimal_point : ".";
  if (std::strcmp(point, ".") != 0 && *point != '\0') {
    s.clear();
    for (char c : text) {
      if (c == '.') {
        s += point;
      } else {
        s += c;
      }
    }
  }
  char* end = nullptr;
  errno = 0;
  *out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) return out;
    start = p + 1;
  }
}

std::string quoted(const std::string& s) {
  return "'" + (s.size() > 80 ? s.substr(0, 80) + "..." : s) + "'";
}

std::string known_ops_text() {
  std::string s;
  for (const std::string& name : fused_ops()) s += (s.empty() ? "" : ", ") + name;
  return s;
}

std::vector<Stmt> parse(const KernelArgs& args, const std::string& text, int first_input, bool allow_product) {
  if (text.empty()) args.fail("the program is empty");
  const int num_inputs = static_cast<int>(args.in.size());
  std::vector<Stmt> prog;
  const std::vector<std::string> parts = split(text, ';');
  for (size_t k = 0; k < parts.size(); ++k) {
    const std::string& st = parts[k];
    const std::string where = "program statement " + std::to_string(k) + " " + quoted(st) + ": ";
    auto bad = [&](const std::string& msg) { args.fail(where + msg); };
    const size_t eq = st.find('=');
    if (st.empty() || st[0] != 'r' || eq == std::string::npos) bad("is not of the form rK=op(args)");
    const int reg = parse_index(st.substr(1, eq - 1));
    if (reg != static_cast<int>(k)) {
      bad("defines " + st.substr(0, eq) + "; registers are defined in order (expected r" + std::to_string(k) + ")");
    }
    const size_t open = st.find('(', eq);
    if (open == std::string::npos || st.back() != ')') bad("is not of the form rK=op(args)");
    std::string head = st.substr(eq + 1, open - eq - 1);  // op or op[attrs]
    std::string attr_text;
    bool has_attrs = false;
    const size_t lb = head.find('[');
    if (lb != std::string::npos) {
      if (head.back() != ']') bad("attrs must be written [name=value,...]");
      attr_text = head.substr(lb + 1, head.size() - lb - 2);
      head = head.substr(0, lb);
      has_attrs = true;
    }
    Stmt s;
    int found = -1;
    for (int i = 0; i < kNumEwOps; ++i) {
      if (head == kEwOpNames[i]) found = i;
    }
    if (found < 0) bad("unknown op '" + head + "' (the interpreter knows: " + known_ops_text() + ")");
    s.op = static_cast<EwOp>(found);
    bool has_exponent = false;
    if (has_attrs) {
      for (const std::string& item : split(attr_text, ',')) {
        const size_t e = item.find('=');
        const std::string name = item.substr(0, e);
        if (e == std::string::npos || s.op != EwOp::Pow || name != "exponent" || has_exponent) {
          bad(head + " has no attr '" + name + "'" + (has_exponent ? " (given twice)" : ""));
        }
        const std::string value = item.substr(e + 1);
        // Python's float repr, read exactly and in any C locale (parse_double).
        double v = 0.0;
        if (!parse_double(value, &v)) bad("attr exponent = '" + value + "' is not a number");
        s.exponent = v;
        has_exponent = true;
      }
    }
    if (s.op == EwOp::Pow && !has_exponent) bad("pow needs the attr exponent");
    const std::string arg_text = st.substr(open + 1, st.size() - open - 2);
    const std::vector<std::string> items = split(arg_text, ',');
    const int arity = ew_is_binary(s.op) ? 2 : 1;
    if (static_cast<int>(items.size()) != arity) {
      bad(head + " takes " + std::to_string(arity) + " inputs, got " + std::to_string(items.size()));
    }
    for (int a = 0; a < arity; ++a) {
      const std::string& it = items[a];
      Arg arg;
      if (it == "p") {
        if (!allow_product) bad("'p' (the matmul product) is only allowed in fused_matmul");
        arg.kind = Arg::Product;
      } else if (!it.empty() && (it[0] == 'i' || it[0] == 'r')) {
        arg.kind = it[0] == 'i' ? Arg::Input : Arg::Reg;
        arg.index = parse_index(it.substr(1));
        if (arg.index < 0) bad("bad argument '" + it + "' (expected iN, rN or p)");
        if (arg.kind == Arg::Reg && arg.index >= static_cast<int>(k)) bad(it + " is not defined yet");
        if (arg.kind == Arg::Input && (arg.index < first_input || arg.index >= num_inputs)) {
          bad("input " + it + " is out of range [" + std::to_string(first_input) + ", " +
              std::to_string(num_inputs) + ")");
        }
      } else {
        bad("bad argument '" + it + "' (expected iN, rN or p)");
      }
      s.args[a] = arg;
    }
    s.nargs = arity;
    prog.push_back(s);
  }
  return prog;
}

// Where a statement's operand comes from, for the current tile starting at t0.
struct Operand {
  enum Kind { Full, Scalar, Gather, Product, Reg } kind = Full;
  int slot = 0;  // Gather: gather buffer; Reg: register buffer
  int input = 0;
};

template <class T> struct Impl final : FusedProgram::Impl {
  struct Step {
    EwOp op;
    T attr;
    Operand a, b;
    int dst = 0;  // register buffer slot written (unused by the last statement)
  };
  struct Gathered {
    const T* base;
    StridedLoop<1> loop;
  };
  std::vector<Step> steps;
  std::vector<const T*> inputs;  // by step input index (nullptr for unnamed inputs)
  std::vector<Gathered> gathered;
  T* out = nullptr;
  const EwLoops<T>* loops = nullptr;
  int num_regs = 0;  // register buffers (slots reused once a register is dead)

  static constexpr int kMaxRowScalars = 8;
  // The register and gather tiles of one run_range_to call (on the calling thread's stack).
  static constexpr size_t kStackBytes = 48 * 1024;

  // The element offset of row `row` (the flat index over every axis but the innermost).
  static int64_t row_offset(const StridedLoop<1>& L, int64_t row) {
    int64_t off = 0;
    for (int64_t j = static_cast<int64_t>(L.dims.size()) - 2; j >= 0; --j) {
      off += (row % L.dims[j]) * L.strides[j][0];
      row /= L.dims[j];
    }
    return off;
  }

  void gather(const Gathered& g, T* dst, int64_t t0, int64_t n) const {
    const StridedLoop<1>& L = g.loop;
    const int64_t inner = L.inner();
    const int64_t si = L.strides.back()[0];
    const int64_t outer_rank = static_cast<int64_t>(L.dims.size()) - 1;
    int64_t done = 0;
    while (done < n) {
      const int64_t f = t0 + done;
      int64_t row = f / inner;
      const int64_t col = f % inner;
      int64_t off = col * si;
      for (int64_t j = outer_rank - 1; j >= 0; --j) {
        off += (row % L.dims[j]) * L.strides[j][0];
        row /= L.dims[j];
      }
      const int64_t len = std::min(inner - col, n - done);
      const T* src = g.base + off;
      T* d = dst + done;
      if (si == 0) {
        std::fill(d, d + len, src[0]);
      } else if (si == 1) {
        std::memcpy(d, src, static_cast<size_t>(len) * sizeof(T));
      } else {
        for (int64_t i = 0; i < len; ++i) d[i] = src[i * si];
      }
      done += len;
    }
  }

  void run_range(int64_t begin, int64_t end) const override { run_range_to(begin, end, out + begin); }

  void run_range_to(int64_t begin, int64_t end, void* dst_at_begin) const override {
    if (end <= begin) return;
    T* obase = static_cast<T*>(dst_at_begin) - begin;  // element f goes to obase[f]
    // Register and gather buffers on the stack, so that a run allocates nothing: tiles of
    // kFusedTile elements while the buffers fit kStackBytes, shorter ones (multiples of 16)
    // for programs with more live buffers.  Every element is computed by the same statements
    // whatever the tile, so the tile length changes no result.
    const int64_t slots = num_regs + static_cast<int64_t>(gathered.size());
    alignas(64) T buf[kStackBytes / sizeof(T)];
    const int64_t fit = slots == 0 ? kFusedTile : static_cast<int64_t>(kStackBytes / sizeof(T)) / slots / 16 * 16;
    const int64_t tile = std::min<int64_t>(kFusedTile, fit);  // >= 16: build() checked the slots
    T* regs = buf;
    T* gbufs = regs + num_regs * tile;
    // A gathered input that is constant along the innermost run (a per-channel scale on NCHW)
    // and whose tile lies inside one run is read as a scalar: no fill of a tile buffer.
    const T* row_scalar[kMaxRowScalars] = {};
    for (int64_t t0 = begin; t0 < end; t0 += tile) {
      const int64_t n = std::min(tile, end - t0);
      for (size_t g = 0; g < gathered.size(); ++g) {
        const Gathered& gi = gathered[g];
        const int64_t inner = gi.loop.inner();
        if (static_cast<int>(g) < kMaxRowScalars && gi.loop.strides.back()[0] == 0 && t0 / inner == (t0 + n - 1) / inner) {
          row_scalar[g] = gi.base + row_offset(gi.loop, t0 / inner);
        } else {
          if (static_cast<int>(g) < kMaxRowScalars) row_scalar[g] = nullptr;
          gather(gi, gbufs + g * tile, t0, n);
        }
      }
      auto operand = [&](const Operand& o, int64_t& stride) -> const T* {
        stride = 1;
        switch (o.kind) {
          case Operand::Full: return inputs[o.input] + t0;
          case Operand::Scalar: stride = 0; return inputs[o.input];
          case Operand::Gather:
            if (o.slot < kMaxRowScalars && row_scalar[o.slot] != nullptr) {
              stride = 0;
              return row_scalar[o.slot];
            }
            return gbufs + o.slot * tile;
          case Operand::Product: return out + t0;
          default: return regs + o.slot * tile;
        }
      };
      for (size_t k = 0; k < steps.size(); ++k) {
        const Step& s = steps[k];
        T* dst = k + 1 == steps.size() ? obase + t0 : regs + s.dst * tile;
        int64_t sa = 1, sb = 1;
        const T* a = operand(s.a, sa);
        const T* b = ew_is_binary(s.op) ? operand(s.b, sb) : nullptr;
        loops->run(s.op, dst, a, sa, b, sb, n, s.attr);
      }
    }
  }
};

bool broadcasts_to(const std::vector<int64_t>& in, const std::vector<int64_t>& out) {
  if (in.size() > out.size()) return false;
  const size_t lead = out.size() - in.size();
  for (size_t j = 0; j < in.size(); ++j) {
    if (in[j] != 1 && in[j] != out[lead + j]) return false;
  }
  return true;
}

template <class T>
std::shared_ptr<const FusedProgram::Impl> build(const KernelArgs& args, const TensorRef& y,
                                                const std::vector<Stmt>& prog) {
  auto impl = std::make_shared<Impl<T>>();
  const int64_t numel = numel_of(y);
  impl->out = y.as<T>();
  impl->loops = &ew_loops<T>(active_isa());
  impl->inputs.assign(args.in.size(), nullptr);
  std::vector<int> kind_of(args.in.size(), -1), slot_of(args.in.size(), 0);
  auto operand = [&](const Arg& a) {
    Operand o;
    if (a.kind == Arg::Reg) {
      o.kind = Operand::Reg;
      o.slot = a.index;
      return o;
    }
    if (a.kind == Arg::Product) {
      o.kind = Operand::Product;
      return o;
    }
    const int i = a.index;
    const TensorRef& t = args.in[i];
    o.input = i;
    if (kind_of[i] < 0) {
      expect_dtype(args, t, y.dtype, "input " + std::to_string(i));
      if (!broadcasts_to(t.dims, y.dims)) {
        args.fail("input " + std::to_string(i) + " of shape " + format_dims(t.dims) +
                  " does not broadcast to the output's " + format_dims(y.dims));
      }
      impl->inputs[i] = t.as<const T>();
      const int64_t nin = numel_of(t);
      if (nin == numel) {
        kind_of[i] = Operand::Full;  // broadcastable with equal size: the same flat layout
      } else if (nin == 1) {
        kind_of[i] = Operand::Scalar;
      } else {
        kind_of[i] = Operand::Gather;
        slot_of[i] = static_cast<int>(impl->gathered.size());
        impl->gathered.push_back({t.as<const T>(), StridedLoop<1>::broadcast(y.dims, {t.dims})});
      }
    }
    o.kind = static_cast<Operand::Kind>(kind_of[i]);
    o.slot = slot_of[i];
    return o;
  };
  // Register buffers: a register's slot is free again after its last reader, so a long chain
  // needs a few tile buffers (in L1), not one per statement.  A statement may write the slot
  // of an operand it reads for the last time: its loop reads element i before writing it.
  const int nstmt = static_cast<int>(prog.size());
  std::vector<int> last_use(nstmt, -1), slot_of_reg(nstmt, -1), free_slots;
  for (int k = 0; k < nstmt; ++k) {
    for (int a = 0; a < prog[k].nargs; ++a) {
      if (prog[k].args[a].kind == Arg::Reg) last_use[prog[k].args[a].index] = k;
    }
  }
  for (int k = 0; k < nstmt; ++k) {
    const Stmt& s = prog[k];
    typename Impl<T>::Step step;
    step.op = s.op;
    step.attr = static_cast<T>(s.exponent);  // as the pow kernel: the attr cast to T
    step.a = operand(s.args[0]);
    if (s.nargs > 1) step.b = operand(s.args[1]);
    for (Operand* o : {&step.a, &step.b}) {
      if (o->kind == Operand::Reg) o->slot = slot_of_reg[o->slot];
    }
    for (int a = 0; a < s.nargs; ++a) {
      const Arg& arg = s.args[a];
      if (arg.kind == Arg::Reg && last_use[arg.index] == k && slot_of_reg[arg.index] >= 0) {
        free_slots.push_back(slot_of_reg[arg.index]);
        slot_of_reg[arg.index] = -1;  // freed once even when read twice (add(r0, r0))
      }
    }
    if (k + 1 < nstmt) {
      if (free_slots.empty()) free_slots.push_back(impl->num_regs++);
      step.dst = slot_of_reg[k] = free_slots.back();
      free_slots.pop_back();
      if (last_use[k] < 0) {  // never read: its slot is free at once
        free_slots.push_back(step.dst);
        slot_of_reg[k] = -1;
      }
    }
    impl->steps.push_back(step);
  }
  const size_t slots = static_cast<size_t>(impl->num_regs) + impl->gathered.size();
  if (slots * 16 * sizeof(T) > Impl<T>::kStackBytes) {
    args.fail("the program needs " + std::to_string(slots) + " live tile buffers, more than the interpreter's " +
              std::to_string(Impl<T>::kStackBytes) + "-byte stack area holds");
  }
  return impl;
}

}  // namespace

FusedProgram::FusedProgram(const KernelArgs& args, const std::string& text, int first_input, bool allow_product) {
  if (args.out.empty()) args.fail("has no output for the program to write");
  const TensorRef& y = args.out[0];
  if (y.dtype != DType::F32 && y.dtype != DType::F64) {
    args.fail(std::string("output must be float32 or float64, got ") + dtype_name(y.dtype));
  }
  init(args, y, text, first_input, allow_product);
}

FusedProgram::FusedProgram(const KernelArgs& args, const std::string& text, const std::vector<int64_t>& value_dims) {
  if (args.out.empty()) args.fail("has no output");
  const DType dt = args.out[0].dtype;
  if (dt != DType::F32 && dt != DType::F64) {
    args.fail(std::string("output must be float32 or float64, got ") + dtype_name(dt));
  }
  // The value never lands in a tensor: its "output" has no storage ("p" is refused).
  init(args, TensorRef{nullptr, dt, value_dims}, text, 0, false);
}

void FusedProgram::init(const KernelArgs& args, const TensorRef& y, const std::string& text, int first_input,
                        bool allow_product) {
  const std::vector<Stmt> prog = parse(args, text, first_input, allow_product);
  impl_ = y.dtype == DType::F32 ? build<float>(args, y, prog) : build<double>(args, y, prog);
  numel_ = numel_of(y);
  num_statements_ = prog.size();
  // Per-element work adds up over the statements: the grain is the harmonic sum of theirs.
  double inv = 0.0;
  for (const Stmt& st : prog) {
    inv += 1.0 / static_cast<double>(y.dtype == DType::F32 ? ew_grain<float>(st.op) : ew_grain<double>(st.op));
  }
  const int64_t grain = std::max<int64_t>(static_cast<int64_t>(1.0 / inv), kFusedTile);
  grain_ = (grain + kFusedTile - 1) / kFusedTile * kFusedTile;
}

std::vector<FusedInstr> parse_fused_program(const KernelArgs& args, const std::string& text, int first_input,
                                            bool allow_product) {
  std::vector<FusedInstr> out;
  for (const Stmt& s : parse(args, text, first_input, allow_product)) {
    FusedInstr f;
    f.op = static_cast<int>(s.op);
    f.exponent = s.exponent;
    f.nargs = s.nargs;
    for (int a = 0; a < s.nargs; ++a) {
      f.kind[a] = s.args[a].kind == Arg::Input ? FusedInstr::Input
                  : s.args[a].kind == Arg::Reg ? FusedInstr::Reg
                                               : FusedInstr::Product;
      f.index[a] = s.args[a].index;
    }
    out.push_back(f);
  }
  return out;
}

void FusedProgram::run_range(int64_t begin, int64_t end) const { impl_->run_range(begin, end); }

void FusedProgram::run_range_to(int64_t begin, int64_t end, void* dst) const { impl_->run_range_to(begin, end, dst); }

void FusedProgram::run(int threads) const {
  const int64_t ntiles = (numel_ + kFusedTile - 1) / kFusedTile;
  const Impl* impl = impl_.get();
  const int64_t n = numel_;
  parallel_for(ntiles, threads, grain_ / kFusedTile, [impl, n](int64_t b, int64_t e) {
    impl->run_range(b * kFusedTile, std::min(e * kFusedTile, n));
  });
}

std::vector<std::string> fused_ops() {
  std::vector<std::string> names(kEwOpNames, kEwOpNames + kNumEwOps);
  std::sort(names.begin(), names.end());
  return names;
}

namespace {

template <class T> Kernel fused_elementwise_kernel(const KernelArgs& args) {
  if (args.in.empty() || args.out.size() != 1) {
    args.fail("expects at least 1 input and 1 output, got " + std::to_string(args.in.size()) + " and " +
              std::to_string(args.out.size()));
  }
  std::vector<std::vector<int64_t>> shapes;
  for (size_t i = 0; i < args.in.size(); ++i) {
    expect_dtype(args, args.in[i], dtype_of<T>(), "input " + std::to_string(i));
    shapes.push_back(args.in[i].dims);
  }
  expect_dtype(args, args.out[0], dtype_of<T>(), "output");
  expect_broadcast_output(args, args.out[0], shapes);
  const FusedProgram prog(args, attrs::FusedElementwise(args).program, 0, false);
  if (prog.numel() == 0) return no_op_kernel();
  const int threads = args.ctx.threads;
  return [prog, threads]() { prog.run(threads); };
}

}  // namespace

void register_fused_elementwise_kernels(KernelRegistry& r) {
  add_typed<FloatTypes>(r, "fused_elementwise", [](auto tag, const KernelArgs& a) -> Kernel {
    return fused_elementwise_kernel<typename decltype(tag)::type>(a);
  });
}

}  // namespace cpu
}  // namespace graphc
