// elementwise.cc — binary arithmetic and comparisons with numpy broadcasting.
// Unary math, cast and where live in elementwise_unary.cc.  The float kernels of the
// fusible ops run the per-ISA loops of elementwise_loops.inc (elementwise_ops.h).
#include "elementwise.h"
#include "elementwise_ops.h"
#include "fused_program.h"
#include "map_kernel.h"

namespace graphc {
namespace cpu {
namespace {

// ---------------------------------------------------------------- binary

template <class T, class O, class Op> Kernel binary_kernel(const KernelArgs& args, Op op, int ew_op) {
  if constexpr (std::is_floating_point_v<T> && std::is_same_v<T, O>) {
    if (ew_op >= 0) {
      // A fusible op: the loop of the active ISA, the very loop a fused program runs.
      const ZipOperands<T, O> z = zip_operands<T, O>(args);
      const auto fn = ew_loops<T>(active_isa()).binary[ew_op];
      return [z, fn]() {
        z.loop.run(z.threads, kCheapGrain, [&](int64_t o, const std::array<int64_t, 2>& off, int64_t n,
                                               const std::array<int64_t, 2>& s) {
          fn(z.y + o, z.a + off[0], s[0], z.b + off[1], s[1], n);
        });
      };
    }
  }
  return zip_kernel<T, O>(args, op, kCheapGrain);  // map_kernel.h
}

// One kernel per dtype the op's schema allows.  The output type and the instantiated
// types are template parameters so that each op instantiates only what it can register
// (this file's compile time is mostly these instantiations).
// ew_op: the op's index in the ISA tables (EwOp), or -1 for an op that is not fusible.
template <bool kToBool, class Types, class Op>
void add_binary(KernelRegistry& r, const char* name, Op op, int ew_op = -1) {
  add_typed<Types>(r, name, [op, ew_op](auto tag, const KernelArgs& a) -> Kernel {
    using T = typename decltype(tag)::type;
    using O = std::conditional_t<kToBool, boolean, T>;
    return binary_kernel<T, O>(a, [op](T x, T y) { return static_cast<O>(op(x, y)); }, ew_op);
  });
}

constexpr int ew(EwOp op) { return static_cast<int>(op); }

}  // namespace

void register_elementwise_kernels(KernelRegistry& r) {
  add_binary<false, NumericTypes>(r, "add", AddF{}, ew(EwOp::Add));
  add_binary<false, NumericTypes>(r, "sub", SubF{}, ew(EwOp::Sub));
  add_binary<false, NumericTypes>(r, "mul", MulF{}, ew(EwOp::Mul));
  add_binary<false, FloatTypes>(r, "div", DivF{}, ew(EwOp::Div));
  add_binary<false, NumericTypes>(r, "maximum", MaximumF{}, ew(EwOp::Maximum));
  add_binary<false, NumericTypes>(r, "minimum", MinimumF{}, ew(EwOp::Minimum));
  add_binary<true, AllTypes>(r, "equal", [](auto a, auto b) { return a == b; });
  add_binary<true, NumericTypes>(r, "less", [](auto a, auto b) { return a < b; });
  add_binary<true, NumericTypes>(r, "greater", [](auto a, auto b) { return a > b; });

  register_unary_kernels(r);
  register_fused_elementwise_kernels(r);
}

}  // namespace cpu

void register_elementwise_kernels(KernelRegistry& r) { cpu::register_elementwise_kernels(r); }

}  // namespace graphc
