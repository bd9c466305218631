#include "kernel_registry.h"

#include <set>
#include <stdexcept>

#include "errors.h"

namespace graphc {

std::string format_dims(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(dims[i]);
  }
  if (dims.size() == 1) s += ",";
  return s + ")";
}

static const char* kind_name(AttrValue::Kind k) {
  switch (k) {
    case AttrValue::Int: return "int";
    case AttrValue::Float: return "float";
    case AttrValue::String: return "string";
    case AttrValue::Bool: return "bool";
    case AttrValue::Ints: return "ints";
    case AttrValue::Floats: return "floats";
    case AttrValue::DTypeKind: return "dtype";
    case AttrValue::Tensor: return "tensor";
  }
  return "?";
}

void KernelArgs::fail(const std::string& msg) const { throw std::invalid_argument(msg); }

void KernelArgs::expect_arity(size_t n_in, size_t n_out) const {
  if (in.size() != n_in || out.size() != n_out) {
    fail("expects " + std::to_string(n_in) + " inputs and " + std::to_string(n_out) +
         " outputs, got " + std::to_string(in.size()) + " and " + std::to_string(out.size()));
  }
}

const AttrValue& KernelArgs::get(const std::string& name) const {
  auto it = step.attrs.find(name);
  if (it == step.attrs.end()) fail("missing attr '" + name + "'");
  return it->second;
}

static void expect_kind(const KernelArgs& a, const std::string& name, const AttrValue& v,
                        AttrValue::Kind k) {
  if (v.kind != k) {
    a.fail("attr '" + name + "' must be " + kind_name(k) + ", got " + kind_name(v.kind));
  }
}

int64_t KernelArgs::attr_int(const std::string& name) const {
  const AttrValue& v = get(name);
  if (v.kind == AttrValue::Bool) return v.i;
  expect_kind(*this, name, v, AttrValue::Int);
  return v.i;
}

int64_t KernelArgs::attr_int(const std::string& name, int64_t fallback) const {
  return has(name) ? attr_int(name) : fallback;
}

bool KernelArgs::attr_bool(const std::string& name, bool fallback) const {
  if (!has(name)) return fallback;
  const AttrValue& v = get(name);
  if (v.kind != AttrValue::Int) expect_kind(*this, name, v, AttrValue::Bool);
  return v.i != 0;
}

double KernelArgs::attr_float(const std::string& name) const {
  const AttrValue& v = get(name);
  if (v.kind == AttrValue::Int) return static_cast<double>(v.i);
  expect_kind(*this, name, v, AttrValue::Float);
  return v.f;
}

std::string KernelArgs::attr_string(const std::string& name, const std::string& fallback) const {
  if (!has(name)) return fallback;
  const AttrValue& v = get(name);
  expect_kind(*this, name, v, AttrValue::String);
  return v.s;
}

std::vector<int64_t> KernelArgs::attr_ints(const std::string& name) const {
  const AttrValue& v = get(name);
  if (v.kind == AttrValue::Int) return {v.i};
  expect_kind(*this, name, v, AttrValue::Ints);
  return v.ints;
}

std::vector<double> KernelArgs::attr_floats(const std::string& name) const {
  const AttrValue& v = get(name);
  if (v.kind == AttrValue::Float) return {v.f};
  expect_kind(*this, name, v, AttrValue::Floats);
  return v.floats;
}

DType KernelArgs::attr_dtype(const std::string& name, DType fallback) const {
  if (!has(name)) return fallback;
  const AttrValue& v = get(name);
  expect_kind(*this, name, v, AttrValue::DTypeKind);
  DType t = static_cast<DType>(v.i);
  if (!dtype_valid(t)) fail("attr '" + name + "' is not a valid dtype");
  return t;
}

void KernelRegistry::add(const std::string& op, DType dtype, KernelFactory factory) {
  kernels_[{op, dtype}] = std::move(factory);
}

const KernelFactory* KernelRegistry::find(const std::string& op, DType dtype) const {
  auto it = kernels_.find({op, dtype});
  return it == kernels_.end() ? nullptr : &it->second;
}

bool KernelRegistry::has_op(const std::string& op) const {
  for (const auto& kv : kernels_) {
    if (kv.first.first == op) return true;
  }
  return false;
}

std::vector<std::pair<std::string, DType>> KernelRegistry::keys() const {
  std::vector<std::pair<std::string, DType>> out;
  out.reserve(kernels_.size());
  for (const auto& kv : kernels_) out.push_back(kv.first);
  return out;  // std::map order: sorted by (op, dtype number)
}

std::vector<std::string> KernelRegistry::ops() const {
  std::set<std::string> names;
  for (const auto& kv : kernels_) names.insert(kv.first.first);
  return {names.begin(), names.end()};
}

// KernelRegistry::cpu() and for_device() live in cpu/kernel_files.cc (every kernel file), so
// that an AOT artifact can ship this file with only the kernel files its plan uses.

}  // namespace graphc
