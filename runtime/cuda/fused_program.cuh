// fused_program.cuh — the CUDA interpreter of a fused op's elementwise program (the `program`
// attr of fused_elementwise, fused_matmul and fused_reduce; grammar in graphc/ops/fused.py,
// the CPU interpreter in runtime/cpu/fused_program.{h,cc}).
//
// Host: make_fused_program<T>(args, text, first_input, allow_product, value_dims, product)
// parses the text with the CPU's parser (cpu::parse_fused_program: same checks, same messages),
// checks every named input's dtype and broadcast as FusedProgram does, assigns register slots
// (a register's slot is reused after its last reader, as the CPU does) and packs everything into
// one FusedDeviceProgram<T>, a plain struct passed to a kernel BY VALUE as a __grid_constant__
// parameter (no device allocation, nothing to upload: it lives in the launch's parameter space
// and is frozen into a captured CUDA graph).  Its size is below 8 KB (kernel parameters may be
// up to 32 KB on sm_70+ with CUDA 12.1+).
//
// Device: p.eval(i) computes value item i (flat C-order index over value_dims): each statement
// reads its operands (an input of the value's full size at i, a broadcast scalar, a broadcast
// input through its Strides<1>, the product buffer at i, or a register) and applies the member
// op's functor — the GRAPHC_HD functors of runtime/cpu/elementwise_ops.h, the very code the CPU
// runs — into a register (a small local array).  The last statement's value is returned.
//
// Users: fused_elementwise (elementwise.cu: one thread per output item, grid-stride), and the
// other fused ops (fused_matmul's epilogue with "p", fused_reduce's prologue) may call eval from
// their own kernels.
#pragma once

#include <string>
#include <vector>

#include "../cpu/elementwise_ops.h"
#include "../cpu/fused_program.h"
#include "common.cuh"

namespace graphc {
namespace cuda {

constexpr int kFusedMaxStmts = 256;
constexpr int kFusedMaxInputs = 64;
constexpr int kFusedMaxGathers = 16;
constexpr int kFusedMaxRegs = 32;

template <class T> struct FusedDeviceProgram {
  // Where an operand comes from.
  enum Kind : uint8_t { Full = 0, Scalar = 1, Gather = 2, Product = 3, Reg = 4 };
  struct Stmt {
    T attr;          // pow's exponent, cast to T
    uint8_t op;      // cpu::EwOp
    uint8_t nargs;
    uint8_t kind[2];
    int16_t index[2];  // Full/Scalar: input slot; Gather: gather slot; Reg: register slot
    int16_t dst;       // register slot written (unused by the last statement)
  };
  int num_stmts = 0;
  int num_regs = 0;
  int64_t numel = 0;                       // value items
  const T* inputs[kFusedMaxInputs] = {};   // by step input index
  const T* gather_base[kFusedMaxGathers] = {};
  Strides<1> gathers[kFusedMaxGathers];    // each broadcast input over the value's dims
  const T* product = nullptr;              // "p": fused_matmul's output buffer, read at item i
  Stmt stmts[kFusedMaxStmts];

#if defined(__CUDACC__)
  __device__ __forceinline__ T operand(uint8_t kind, int16_t index, int64_t i, const T* regs) const {
    switch (kind) {
      case Full: return inputs[index][i];
      case Scalar: return inputs[index][0];
      case Gather: {
        const Strides<1>& s = gathers[index];
        int64_t off[1];
        s.offsets(i, off);
        return gather_base[index][off[0]];
      }
      case Product: return product[i];
      default: return regs[index];
    }
  }

  // One member op on (a, b): the CPU's functors; pow with exponent 0.5 is sqrt, as the CPU's
  // pow loop (numpy's power(x, 0.5)).
  static __device__ __forceinline__ T apply(uint8_t op, T a, T b, T attr) {
    using cpu::EwOp;
    switch (static_cast<EwOp>(op)) {
      case EwOp::Add: return cpu::AddF{}(a, b);
      case EwOp::Sub: return cpu::SubF{}(a, b);
      case EwOp::Mul: return cpu::MulF{}(a, b);
      case EwOp::Div: return cpu::DivF{}(a, b);
      case EwOp::Maximum: return cpu::MaximumF{}(a, b);
      case EwOp::Minimum: return cpu::MinimumF{}(a, b);
      case EwOp::ReluGrad: return cpu::ReluGradF{}(a, b);
      case EwOp::Abs: return cpu::AbsF{}(a);
      case EwOp::Neg: return cpu::NegF{}(a);
      case EwOp::Exp: return cpu::ExpF{}(a);
      case EwOp::Log: return cpu::LogF{}(a);
      case EwOp::Sqrt: return cpu::SqrtF{}(a);
      case EwOp::Relu: return cpu::ReluF{}(a);
      case EwOp::Sigmoid: return cpu::SigmoidF{}(a);
      case EwOp::Tanh: return cpu::TanhF{}(a);
      case EwOp::Pow: return attr == T(0.5) ? cpu::SqrtF{}(a) : cpu::PowF{}(a, attr);
      default: return a;  // never: the host checked every op
    }
  }

  // Value item i.
  __device__ T eval(int64_t i) const {
    T regs[kFusedMaxRegs];
    T v = T(0);
    for (int k = 0; k < num_stmts; ++k) {
      const Stmt& s = stmts[k];
      const T a = operand(s.kind[0], s.index[0], i, regs);
      const T b = s.nargs > 1 ? operand(s.kind[1], s.index[1], i, regs) : T(0);
      v = apply(s.op, a, b, s.attr);
      if (k + 1 < num_stmts) regs[s.dst] = v;
    }
    return v;
  }
#endif
};

namespace fused_detail {
inline bool broadcasts_to(const std::vector<int64_t>& in, const std::vector<int64_t>& out) {
  if (in.size() > out.size()) return false;
  const size_t lead = out.size() - in.size();
  for (size_t j = 0; j < in.size(); ++j) {
    if (in[j] != 1 && in[j] != out[lead + j]) return false;
  }
  return true;
}
}  // namespace fused_detail

// The device program of `text` over a value of `value_dims` (the step's output dims for
// fused_elementwise/fused_matmul).  first_input / allow_product: as cpu::FusedProgram.
// product: the buffer "p" reads (fused_matmul's output), else nullptr.  Fails (args.fail) on
// the CPU's errors and when the program exceeds the interpreter's capacity.
template <class T>
FusedDeviceProgram<T> make_fused_program(const KernelArgs& args, const std::string& text, int first_input,
                                         bool allow_product, const std::vector<int64_t>& value_dims,
                                         const T* product) {
  using P = FusedDeviceProgram<T>;
  const std::vector<cpu::FusedInstr> prog = cpu::parse_fused_program(args, text, first_input, allow_product);
  const int nstmt = static_cast<int>(prog.size());
  if (nstmt > kFusedMaxStmts) {
    args.fail("the program has " + std::to_string(nstmt) + " statements; the CUDA interpreter takes " +
              std::to_string(kFusedMaxStmts) + " at most");
  }
  if (args.in.size() > static_cast<size_t>(kFusedMaxInputs)) {
    args.fail("the step has " + std::to_string(args.in.size()) + " inputs; the CUDA interpreter takes " +
              std::to_string(kFusedMaxInputs) + " at most");
  }
  P p;
  p.num_stmts = nstmt;
  p.numel = cpu::numel_of(value_dims);
  p.product = product;
  const DType dt = cpu::dtype_of<T>();
  std::vector<int> kind_of(args.in.size(), -1), slot_of(args.in.size(), 0);
  int num_gathers = 0;
  auto input_operand = [&](int i, uint8_t& kind, int16_t& index) {
    const TensorRef& t = args.in[i];
    if (kind_of[i] < 0) {
      cpu::expect_dtype(args, t, dt, "input " + std::to_string(i));
      if (!fused_detail::broadcasts_to(t.dims, value_dims)) {
        args.fail("input " + std::to_string(i) + " of shape " + format_dims(t.dims) +
                  " does not broadcast to the output's " + format_dims(value_dims));
      }
      p.inputs[i] = t.as<const T>();
      const int64_t nin = cpu::numel_of(t);
      if (nin == p.numel) {
        kind_of[i] = P::Full;  // broadcastable with equal size: the same flat layout
      } else if (nin == 1) {
        kind_of[i] = P::Scalar;
      } else {
        if (num_gathers == kFusedMaxGathers) {
          args.fail("the program reads more than " + std::to_string(kFusedMaxGathers) +
                    " broadcast inputs; the CUDA interpreter takes that many at most");
        }
        kind_of[i] = P::Gather;
        slot_of[i] = num_gathers;
        p.gather_base[num_gathers] = t.as<const T>();
        p.gathers[num_gathers] = to_device(args, cpu::StridedLoop<1>::broadcast(value_dims, {t.dims}));
        ++num_gathers;
      }
    }
    kind = static_cast<uint8_t>(kind_of[i]);
    index = static_cast<int16_t>(kind_of[i] == P::Gather ? slot_of[i] : i);
  };
  // Register slots, as the CPU interpreter: free after the last reader.
  std::vector<int> last_use(nstmt, -1), slot_of_reg(nstmt, -1), free_slots;
  for (int k = 0; k < nstmt; ++k) {
    for (int a = 0; a < prog[k].nargs; ++a) {
      if (prog[k].kind[a] == cpu::FusedInstr::Reg) last_use[prog[k].index[a]] = k;
    }
  }
  for (int k = 0; k < nstmt; ++k) {
    const cpu::FusedInstr& in = prog[k];
    typename P::Stmt& s = p.stmts[k];
    s.op = static_cast<uint8_t>(in.op);
    s.attr = static_cast<T>(in.exponent);  // as the pow kernel: the attr cast to T
    s.nargs = static_cast<uint8_t>(in.nargs);
    s.kind[0] = s.kind[1] = P::Scalar;
    s.index[0] = s.index[1] = 0;
    s.dst = 0;
    for (int a = 0; a < in.nargs; ++a) {
      if (in.kind[a] == cpu::FusedInstr::Input) {
        input_operand(in.index[a], s.kind[a], s.index[a]);
      } else if (in.kind[a] == cpu::FusedInstr::Product) {
        s.kind[a] = P::Product;
      } else {
        s.kind[a] = P::Reg;
        s.index[a] = static_cast<int16_t>(slot_of_reg[in.index[a]]);
      }
    }
    for (int a = 0; a < in.nargs; ++a) {
      if (in.kind[a] == cpu::FusedInstr::Reg && last_use[in.index[a]] == k && slot_of_reg[in.index[a]] >= 0) {
        free_slots.push_back(slot_of_reg[in.index[a]]);
        slot_of_reg[in.index[a]] = -1;
      }
    }
    if (k + 1 < nstmt) {
      if (free_slots.empty()) free_slots.push_back(p.num_regs++);
      s.dst = static_cast<int16_t>(free_slots.back());
      slot_of_reg[k] = free_slots.back();
      free_slots.pop_back();
      if (last_use[k] < 0) {
        free_slots.push_back(s.dst);
        slot_of_reg[k] = -1;
      }
    }
  }
  if (p.num_regs > kFusedMaxRegs) {
    args.fail("the program needs " + std::to_string(p.num_regs) + " live registers; the CUDA interpreter has " +
              std::to_string(kFusedMaxRegs));
  }
  return p;
}

}  // namespace cuda
}  // namespace graphc
