// plan.h — the plan as plain data.
//
// The runtime reads nothing but these structs, and trusts none of them: validate.h
// checks a PlanDesc before the executor allocates anything.  They are filled by the Cython wrapper
// from a graphc.Plan protobuf message today, and are meant to be fillable by generated
// C++ (AOT artifacts) later, so they hold no pointers, no protobuf and no Python.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace graphc {

// ARENA offsets MUST be multiples of this.
constexpr uint64_t kArenaAlignment = 64;

// Numbering matches graphc.DataType in proto/graphc.proto.
enum class DType : int32_t { Invalid = 0, F32 = 1, F64 = 2, I32 = 3, I64 = 4, Bool = 5 };

// Numbering matches graphc.Storage in proto/graphc.proto.
enum class Storage : int32_t { Arena = 0, Persistent = 1, Constant = 2, View = 3 };

inline bool dtype_valid(DType t) {
  return static_cast<int32_t>(t) >= 1 && static_cast<int32_t>(t) <= 5;
}

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::Bool: return 1;
    default: return 0;
  }
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::F64: return "float64";
    case DType::I32: return "int32";
    case DType::I64: return "int64";
    case DType::Bool: return "bool";
    default: return "invalid";
  }
}

// One attribute of a step.  `kind` says which member is meaningful; an absent attr is
// simply not in the step's map (that is how "axes: None" is spelled).
struct AttrValue {
  enum Kind : int32_t { Int = 0, Float = 1, String = 2, Bool = 3, Ints = 4, Floats = 5,
                        DTypeKind = 6, Tensor = 7 };
  Kind kind = Int;
  int64_t i = 0;      // Int, Bool (0/1), DTypeKind (a DType number)
  double f = 0.0;     // Float
  std::string s;      // String
  std::vector<int64_t> ints;
  std::vector<double> floats;
};

struct ValueDesc {
  std::string name;
  DType dtype = DType::Invalid;
  std::vector<int64_t> dims;
  Storage storage = Storage::Arena;
  uint64_t offset = 0;   // Arena: byte offset, 64-byte aligned.
  uint64_t nbytes = 0;   // numel * itemsize.
  int32_t index = 0;     // Persistent/Constant: index into PlanDesc::persistent/constants.
  int32_t alias_of = 0;  // View: the value whose bytes it aliases.
};

struct StepDesc {
  std::string op;
  std::string node;
  std::vector<int32_t> inputs;   // indices into PlanDesc::values
  std::vector<int32_t> outputs;  // indices into PlanDesc::values
  std::map<std::string, AttrValue> attrs;
  // ARENA values dead once this step has run (PlanStep.frees).  The runtime never reads
  // them afterwards; GRAPHC_POISON mode overwrites their bytes with 0xFF.
  std::vector<int32_t> frees;
  // ARENA scratch values this step's kernel may use, live during this step only
  // (PlanStep.workspaces).
  std::vector<int32_t> workspaces;
};

// Initial bytes of a persistent variable or of a constant.
struct TensorData {
  std::string name;
  DType dtype = DType::Invalid;
  std::vector<int64_t> dims;
  std::string bytes;  // little-endian, C order; size MUST be numel * itemsize.
};

struct PlanDesc {
  std::vector<ValueDesc> values;
  std::vector<StepDesc> steps;
  std::vector<int32_t> feeds;
  std::vector<int32_t> fetches;
  std::vector<TensorData> persistent;
  std::vector<TensorData> constants;
  uint64_t arena_bytes = 0;
};

}  // namespace graphc
