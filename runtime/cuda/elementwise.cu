// elementwise.cu — the CUDA twin of runtime/cpu/elementwise.cc and elementwise_unary.cc:
// binary arithmetic and comparisons with numpy broadcasting, the unary fusible ops,
// logical_not, cast, where, and fused_elementwise (the device interpreter of
// fused_program.cuh).
//
// Every op evaluates the CPU's GRAPHC_HD scalar code (elementwise_ops.h: the functors,
// exp_f32/log_f32/tanh_f32, cast_value), through the launch helpers of ew.cuh:
//   binary ops    ew_zip: flat vector kernel (16-byte loads, a broadcast scalar read once) when
//                 both operands are contiguous or scalar and aligned, else one thread per output
//                 item through Strides<2> (32-bit index math below 2^31 items); grid-stride.
//   unary ops     ew_map: one 16-byte vector per thread per iteration, grid-stride.
//   cast          ew_map with cast_value<From, To> (the vector width of the wider type).
//   where         flat vector kernel (cond, x, y contiguous and aligned), else Strides<3>.
//   fused_elem.   one thread per output item (grid-stride) running FusedDeviceProgram::eval.
#include <string>

#include "../cpu/elementwise.h"
#include "../cpu/elementwise_ops.h"
#include "ew.cuh"
#include "fused_program.cuh"

namespace graphc {
namespace cuda {
namespace {

using cpu::boolean;
using cpu::EwOp;

// ---------------------------------------------------------------- functors

struct EqualF {
  template <class T> GRAPHC_HD boolean operator()(T a, T b) const { return static_cast<boolean>(a == b); }
};
struct LessF {
  template <class T> GRAPHC_HD boolean operator()(T a, T b) const { return static_cast<boolean>(a < b); }
};
struct GreaterF {
  template <class T> GRAPHC_HD boolean operator()(T a, T b) const { return static_cast<boolean>(a > b); }
};
struct LogicalNotF {
  template <class T> GRAPHC_HD T operator()(T x) const { return static_cast<T>(x == 0); }
};
// pow with the step's exponent (the attr cast to T), as PowF.
template <class T> struct PowByF {
  T e;
  GRAPHC_HD T operator()(T x) const { return cpu::PowF{}(x, e); }
};
template <class From, class To> struct CastF {
  GRAPHC_HD To operator()(From v) const { return cpu::cast_value<From, To>(v); }
};

// ---------------------------------------------------------------- registration

// y = op(a, b) with broadcasting, for every dtype of Types the schema allows; O: T or boolean.
template <bool kToBool, class Types, class Op> void add_binary(KernelRegistry& r, const char* name) {
  add_typed<Types>(r, name, [name](auto tag, const KernelArgs& a) -> Kernel {
    using T = typename decltype(tag)::type;
    using O = std::conditional_t<kToBool, boolean, T>;
    return ew_zip<T, O>(a, Op{}, name);
  });
}

// y = op(x), for every dtype of Types the schema allows.
template <class Types, class Op> void add_unary(KernelRegistry& r, const char* name) {
  add_typed<Types>(r, name, [name](auto tag, const KernelArgs& a) -> Kernel {
    using T = typename decltype(tag)::type;
    return ew_map<T, T>(a, Op{}, name);
  });
}

// pow (float only): the attr cast to T; exponent 0.5 is sqrt, as the CPU's pow loop.
template <class T> Kernel pow_kernel(const KernelArgs& a) {
  const T e = static_cast<T>(attrs::Pow(a).exponent);
  if (e == T(0.5)) return ew_map<T, T>(a, cpu::SqrtF{}, "pow");
  return ew_map<T, T>(a, PowByF<T>{e}, "pow");
}

Kernel cast_kernel(const KernelArgs& args) {
  args.expect_arity(1, 1);
  const DType to = attrs::Cast(args).to;
  cpu::expect_dtype(args, args.out[0], to, "output");
  return cpu::dispatch_all(args.in[0].dtype, [&](auto from_tag) {
    using From = typename decltype(from_tag)::type;
    return cpu::dispatch_all(to, [&](auto to_tag) {
      using To = typename decltype(to_tag)::type;
      return ew_map<From, To>(args, CastF<From, To>{}, "cast");
    });
  });
}

Kernel where_kernel(const KernelArgs& args) {
  args.expect_arity(3, 1);
  const TensorRef &c = args.in[0], &x = args.in[1], &yv = args.in[2], &out = args.out[0];
  cpu::expect_dtype(args, c, DType::Bool, "input 0 (cond)");
  cpu::expect_dtype(args, yv, x.dtype, "input 2 (y, like x)");
  cpu::expect_dtype(args, out, x.dtype, "output");
  cpu::expect_broadcast_output(args, out, {c.dims, x.dims, yv.dims});
  const auto loop = cpu::StridedLoop<3>::broadcast(out.dims, {c.dims, x.dims, yv.dims});
  if (loop.numel == 0) return no_op_kernel();
  const Strides<3> s = to_device(args, loop);
  const cudaStream_t stream = stream_of(args);
  return cpu::dispatch_bytes(dtype_size(x.dtype), [&](auto tag) -> Kernel {
    using T = typename decltype(tag)::type;
    const boolean* pc = c.as<const boolean>();
    const T* px = x.as<const T>();
    const T* py = yv.as<const T>();
    T* po = out.as<T>();
    const int64_t n = s.numel;
    constexpr int V = 16 / sizeof(T);
    bool flat = s.rank == 1;
    for (int k = 0; k < 3; ++k) flat = flat && s.strides[0][k] == 1;
    if (flat && aligned_to(pc + s.base[0], V) && aligned_to(px + s.base[1], 16) && aligned_to(py + s.base[2], 16) &&
        aligned_to(po, 16)) {
      const boolean* c0 = pc + s.base[0];
      const T* x0 = px + s.base[1];
      const T* y0 = py + s.base[2];
      const unsigned blocks = blocks_for(std::max<int64_t>(n / V, 1));
      return [=] {
        ew_where_flat_kernel<T, V><<<blocks, kThreads, 0, stream>>>(c0, x0, y0, po, n);
        GRAPHC_CUDA_LAUNCH_CHECK("where");
      };
    }
    const unsigned blocks = blocks_for(n);
    if (small_index(n)) {
      return [=] {
        ew_where_strided_kernel<T, uint32_t><<<blocks, kThreads, 0, stream>>>(pc, px, py, po, s);
        GRAPHC_CUDA_LAUNCH_CHECK("where");
      };
    }
    return [=] {
      ew_where_strided_kernel<T, uint64_t><<<blocks, kThreads, 0, stream>>>(pc, px, py, po, s);
      GRAPHC_CUDA_LAUNCH_CHECK("where");
    };
  });
}

// ---------------------------------------------------------------- fused_elementwise

// One thread per output item (grid-stride): y[i] = the program's value at i.
template <class T> __global__ void fused_elementwise_kernel(const __grid_constant__ FusedDeviceProgram<T> p, T* y) {
  GRAPHC_GRID_STRIDE(i, p.numel) { y[i] = p.eval(i); }
}

template <class T> Kernel fused_elementwise_factory(const KernelArgs& args) {
  if (args.in.empty() || args.out.size() != 1) {
    args.fail("expects at least 1 input and 1 output, got " + std::to_string(args.in.size()) + " and " +
              std::to_string(args.out.size()));
  }
  std::vector<std::vector<int64_t>> shapes;
  for (size_t i = 0; i < args.in.size(); ++i) {
    cpu::expect_dtype(args, args.in[i], dtype_of<T>(), "input " + std::to_string(i));
    shapes.push_back(args.in[i].dims);
  }
  cpu::expect_dtype(args, args.out[0], dtype_of<T>(), "output");
  cpu::expect_broadcast_output(args, args.out[0], shapes);
  const TensorRef& y = args.out[0];
  const FusedDeviceProgram<T> p =
      make_fused_program<T>(args, attrs::FusedElementwise(args).program, 0, false, y.dims, nullptr);
  if (p.numel == 0) return no_op_kernel();
  T* py = y.as<T>();
  const cudaStream_t stream = stream_of(args);
  const unsigned blocks = blocks_for(p.numel);
  return [p, py, stream, blocks] {
    fused_elementwise_kernel<T><<<blocks, kThreads, 0, stream>>>(p, py);
    GRAPHC_CUDA_LAUNCH_CHECK("fused_elementwise");
  };
}

}  // namespace

void register_elementwise_kernels(KernelRegistry& r) {
  add_binary<false, NumericTypes, cpu::AddF>(r, "add");
  add_binary<false, NumericTypes, cpu::SubF>(r, "sub");
  add_binary<false, NumericTypes, cpu::MulF>(r, "mul");
  add_binary<false, FloatTypes, cpu::DivF>(r, "div");
  add_binary<false, NumericTypes, cpu::MaximumF>(r, "maximum");
  add_binary<false, NumericTypes, cpu::MinimumF>(r, "minimum");
  add_binary<true, AllTypes, EqualF>(r, "equal");
  add_binary<true, NumericTypes, LessF>(r, "less");
  add_binary<true, NumericTypes, GreaterF>(r, "greater");

  add_unary<NumericTypes, cpu::NegF>(r, "neg");
  add_unary<NumericTypes, cpu::AbsF>(r, "abs");
  add_unary<NumericTypes, cpu::ReluF>(r, "relu");
  add_unary<FloatTypes, cpu::ExpF>(r, "exp");
  add_unary<FloatTypes, cpu::LogF>(r, "log");
  add_unary<FloatTypes, cpu::SqrtF>(r, "sqrt");
  add_unary<FloatTypes, cpu::SigmoidF>(r, "sigmoid");
  add_unary<FloatTypes, cpu::TanhF>(r, "tanh");
  add_typed<FloatTypes>(r, "pow", [](auto tag, const KernelArgs& a) -> Kernel {
    return pow_kernel<typename decltype(tag)::type>(a);
  });
  add_unary<AllTypes, LogicalNotF>(r, "logical_not");

  for (DType t : cpu::schema_dtypes("cast")) add_kernel(r, "cast", t, cast_kernel);
  for (DType t : cpu::schema_dtypes("where")) add_kernel(r, "where", t, where_kernel);  // keyed by cond: bool

  add_typed<FloatTypes>(r, "fused_elementwise", [](auto tag, const KernelArgs& a) -> Kernel {
    return fused_elementwise_factory<typename decltype(tag)::type>(a);
  });
}

}  // namespace cuda
}  // namespace graphc
