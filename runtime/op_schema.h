// op_schema.h — GENERATED from graphc's op registry by graphc/schema_codegen.py.
// DO NOT EDIT: change the op's declaration in graphc/ops/*.py and run
//     python -m graphc.schema_codegen
// tests/test_op_schema.py fails when this file is stale.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernel_registry.h"
#include "plan.h"

namespace graphc {
namespace schema {

constexpr uint32_t bit(DType t) { return 1u << static_cast<int32_t>(t); }
constexpr uint32_t kDeviceCpu = 1u;
constexpr uint32_t kDeviceCuda = 2u;

enum class Schedule : uint8_t { Any, Asap, Alap };

struct InputInfo {
  const char* name;
  const char* type_var;  // inputs naming one type var share one dtype; "" = none
  uint32_t dtypes;        // bit(DType) of each allowed dtype
};

struct AttrInfo {
  const char* name;
  AttrValue::Kind kind;
  bool required;
  bool optional;  // may be absent (None)
};

struct OpInfo {
  const char* name;
  const InputInfo* inputs;
  int num_inputs;         // with variadic, the last input repeats one or more times
  bool variadic;
  const AttrInfo* attrs;
  int num_attrs;
  const int* inplace;     // (output, input) pairs whose storage the output overwrites
  int num_inplace;
  uint32_t dispatch_dtypes;  // dtypes kernels are keyed by (input 0's; any for no inputs)
  bool elementwise;       // an output may take over a dying same-size input's bytes
  bool view;              // the output aliases input 0 (no kernel call)
  bool constant;          // value fixed at build time, stored as constant data
  bool differentiable;
  uint32_t kernels;       // kDevice* bits: devices with a kernel (else expanded)
  const int* alias;       // (output, input) pairs: the output is a VIEW of the input's bytes,
                          // which the step writes in place (storage VIEW, alias_of = the input)
  int num_alias;
  bool alias_each;        // output k is a view of input k, for every k (variadic collectives)
  bool contiguous_inputs; // the inputs' roots lie back to back in one arena range, in input
                          // order, each at a 64-byte aligned offset (a gradient bucket)
  Schedule schedule;      // where the scheduler places the node (informational at run time)
};

// The input an output is a VIEW of (alias), or -1 when output `out` is not an alias.
inline int alias_input(const OpInfo& op, int out) {
  if (op.alias_each) return out;
  for (int k = 0; k < op.num_alias; ++k)
    if (op.alias[2 * k] == out) return op.alias[2 * k + 1];
  return -1;
}

inline constexpr InputInfo kAbsInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr InputInfo kAcosInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kAcoshInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kAdamUpdateInputs[] = {
    {"w", "T", bit(DType::F32) | bit(DType::F64)},
    {"g", "T", bit(DType::F32) | bit(DType::F64)},
    {"m", "T", bit(DType::F32) | bit(DType::F64)},
    {"v", "T", bit(DType::F32) | bit(DType::F64)},
    {"step", "", bit(DType::I64)},
};
inline constexpr AttrInfo kAdamUpdateAttrs[] = {
    {"lr", AttrValue::Float, true, false},
    {"beta1", AttrValue::Float, false, false},
    {"beta2", AttrValue::Float, false, false},
    {"eps", AttrValue::Float, false, false},
    {"weight_decay", AttrValue::Float, false, false},
    {"decoupled", AttrValue::Bool, false, false},
    {"grad_scale", AttrValue::Float, false, false},
};
inline constexpr int kAdamUpdateInplace[] = {0, 0, 1, 2, 2, 3};
inline constexpr InputInfo kAddInputs[] = {
    {"a", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
    {"b", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr InputInfo kAllreduceStartInputs[] = {
    {"g", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kAllreduceStartAttrs[] = {
    {"bucket", AttrValue::Int, true, false},
};
inline constexpr InputInfo kAllreduceWaitInputs[] = {
    {"r", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kAllreduceWaitAttrs[] = {
    {"bucket", AttrValue::Int, true, false},
};
inline constexpr InputInfo kArgmaxInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr AttrInfo kArgmaxAttrs[] = {
    {"axis", AttrValue::Int, false, false},
    {"keepdims", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kArgminInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr AttrInfo kArgminAttrs[] = {
    {"axis", AttrValue::Int, false, false},
    {"keepdims", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kAsinInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kAsinhInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kAssignInputs[] = {
    {"var", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
    {"value", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr int kAssignInplace[] = {0, 0};
inline constexpr InputInfo kAtanInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kAtanhInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kAvgPool2dInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kAvgPool2dAttrs[] = {
    {"kernel_size", AttrValue::Ints, true, false},
    {"stride", AttrValue::Ints, true, false},
    {"padding", AttrValue::Ints, true, false},
    {"count_include_pad", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kAvgPool2dGradInputs[] = {
    {"dy", "T", bit(DType::F32) | bit(DType::F64)},
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kAvgPool2dGradAttrs[] = {
    {"kernel_size", AttrValue::Ints, true, false},
    {"stride", AttrValue::Ints, true, false},
    {"padding", AttrValue::Ints, true, false},
    {"count_include_pad", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kBatchNormInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
    {"running_mean", "T", bit(DType::F32) | bit(DType::F64)},
    {"running_var", "T", bit(DType::F32) | bit(DType::F64)},
    {"weight", "T", bit(DType::F32) | bit(DType::F64)},
    {"bias", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kBatchNormAttrs[] = {
    {"momentum", AttrValue::Float, false, true},
    {"eps", AttrValue::Float, false, false},
};
inline constexpr InputInfo kBatchNormTrainInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
    {"weight", "T", bit(DType::F32) | bit(DType::F64)},
    {"bias", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kBatchNormTrainAttrs[] = {
    {"eps", AttrValue::Float, false, false},
};
inline constexpr InputInfo kBatchNormTrainGradInputs[] = {
    {"dy", "T", bit(DType::F32) | bit(DType::F64)},
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
    {"weight", "T", bit(DType::F32) | bit(DType::F64)},
    {"mean", "T", bit(DType::F32) | bit(DType::F64)},
    {"var", "T", bit(DType::F32) | bit(DType::F64)},
    {"dmean", "T", bit(DType::F32) | bit(DType::F64)},
    {"dvar", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kBatchNormTrainGradAttrs[] = {
    {"eps", AttrValue::Float, false, false},
};
inline constexpr InputInfo kBatchNormUpdateStatsInputs[] = {
    {"running_mean", "T", bit(DType::F32) | bit(DType::F64)},
    {"running_var", "T", bit(DType::F32) | bit(DType::F64)},
    {"mean", "T", bit(DType::F32) | bit(DType::F64)},
    {"var", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kBatchNormUpdateStatsAttrs[] = {
    {"momentum", AttrValue::Float, true, false},
    {"count", AttrValue::Int, true, false},
};
inline constexpr int kBatchNormUpdateStatsInplace[] = {0, 0, 1, 1};
inline constexpr InputInfo kBroadcastLikeInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
    {"like", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr InputInfo kBroadcastToInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr AttrInfo kBroadcastToAttrs[] = {
    {"shape", AttrValue::Ints, true, false},
};
inline constexpr InputInfo kCastInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr AttrInfo kCastAttrs[] = {
    {"to", AttrValue::DTypeKind, true, false},
};
inline constexpr InputInfo kCeilInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kConcatInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr AttrInfo kConcatAttrs[] = {
    {"axis", AttrValue::Int, true, false},
};
inline constexpr AttrInfo kConstantAttrs[] = {
    {"value", AttrValue::Tensor, true, false},
};
inline constexpr InputInfo kConv2dInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
    {"w", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kConv2dAttrs[] = {
    {"stride", AttrValue::Ints, true, false},
    {"pads", AttrValue::Ints, true, false},
    {"dilation", AttrValue::Ints, true, false},
    {"groups", AttrValue::Int, false, false},
};
inline constexpr InputInfo kConv2dGradInputInputs[] = {
    {"dy", "T", bit(DType::F32) | bit(DType::F64)},
    {"w", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kConv2dGradInputAttrs[] = {
    {"stride", AttrValue::Ints, true, false},
    {"pads", AttrValue::Ints, true, false},
    {"dilation", AttrValue::Ints, true, false},
    {"groups", AttrValue::Int, false, false},
    {"input_size", AttrValue::Ints, true, false},
};
inline constexpr InputInfo kConv2dGradWeightInputs[] = {
    {"dy", "T", bit(DType::F32) | bit(DType::F64)},
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kConv2dGradWeightAttrs[] = {
    {"stride", AttrValue::Ints, true, false},
    {"pads", AttrValue::Ints, true, false},
    {"dilation", AttrValue::Ints, true, false},
    {"groups", AttrValue::Int, false, false},
    {"kernel_size", AttrValue::Ints, true, false},
};
inline constexpr InputInfo kConvTranspose2dInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
    {"w", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kConvTranspose2dAttrs[] = {
    {"stride", AttrValue::Ints, true, false},
    {"pads", AttrValue::Ints, true, false},
    {"dilation", AttrValue::Ints, true, false},
    {"groups", AttrValue::Int, false, false},
    {"output_padding", AttrValue::Ints, false, false},
};
inline constexpr InputInfo kCosInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kCoshInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kCumsumInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr AttrInfo kCumsumAttrs[] = {
    {"axis", AttrValue::Int, true, false},
    {"exclusive", AttrValue::Bool, false, false},
    {"reverse", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kDivInputs[] = {
    {"a", "T", bit(DType::F32) | bit(DType::F64)},
    {"b", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kDropoutInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kDropoutAttrs[] = {
    {"p", AttrValue::Float, false, false},
    {"seed", AttrValue::Int, false, true},
};
inline constexpr InputInfo kDropoutTrainInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64)},
    {"step", "", bit(DType::I64)},
};
inline constexpr AttrInfo kDropoutTrainAttrs[] = {
    {"p", AttrValue::Float, false, false},
    {"seed", AttrValue::Int, true, false},
};
inline constexpr InputInfo kEinsumInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kEinsumAttrs[] = {
    {"equation", AttrValue::String, true, false},
};
inline constexpr InputInfo kEmbeddingInputs[] = {
    {"ids", "", bit(DType::I32) | bit(DType::I64)},
    {"weight", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr InputInfo kEmbeddingGradInputs[] = {
    {"g", "T", bit(DType::F32) | bit(DType::F64)},
    {"ids", "", bit(DType::I32) | bit(DType::I64)},
    {"weight", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kEqualInputs[] = {
    {"a", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
    {"b", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr InputInfo kErfInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kExpInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kExpandDimsInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr AttrInfo kExpandDimsAttrs[] = {
    {"axes", AttrValue::Ints, true, false},
};
inline constexpr InputInfo kFloorInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kFusedElementwiseInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kFusedElementwiseAttrs[] = {
    {"program", AttrValue::String, true, false},
};
inline constexpr InputInfo kFusedMatmulInputs[] = {
    {"a", "T", bit(DType::F32) | bit(DType::F64)},
    {"b", "T", bit(DType::F32) | bit(DType::F64)},
    {"extra", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kFusedMatmulAttrs[] = {
    {"transpose_a", AttrValue::Bool, false, false},
    {"transpose_b", AttrValue::Bool, false, false},
    {"program", AttrValue::String, true, false},
};
inline constexpr InputInfo kFusedReduceInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kFusedReduceAttrs[] = {
    {"program", AttrValue::String, true, false},
    {"reduce", AttrValue::String, true, false},
    {"axes", AttrValue::Ints, false, true},
    {"keepdims", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kGeluInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kGeluAttrs[] = {
    {"approximate", AttrValue::String, false, false},
};
inline constexpr InputInfo kGeluGradInputs[] = {
    {"dy", "T", bit(DType::F32) | bit(DType::F64)},
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kGeluGradAttrs[] = {
    {"approximate", AttrValue::String, false, false},
};
inline constexpr InputInfo kGreaterInputs[] = {
    {"a", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
    {"b", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr InputInfo kGreaterEqualInputs[] = {
    {"a", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
    {"b", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr InputInfo kGruCellInputs[] = {
    {"xw", "T", bit(DType::F32) | bit(DType::F64)},
    {"hw", "T", bit(DType::F32) | bit(DType::F64)},
    {"h", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kGruCellGradInputs[] = {
    {"dy", "T", bit(DType::F32) | bit(DType::F64)},
    {"xw", "T", bit(DType::F32) | bit(DType::F64)},
    {"hw", "T", bit(DType::F32) | bit(DType::F64)},
    {"h", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kIdentityInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr InputInfo kInstanceNormInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
    {"scale", "T", bit(DType::F32) | bit(DType::F64)},
    {"bias", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kInstanceNormAttrs[] = {
    {"eps", AttrValue::Float, false, false},
};
inline constexpr InputInfo kIntDivInputs[] = {
    {"a", "T", bit(DType::I32) | bit(DType::I64)},
    {"b", "T", bit(DType::I32) | bit(DType::I64)},
};
inline constexpr InputInfo kIsinfInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kIsinfAttrs[] = {
    {"detect_positive", AttrValue::Bool, false, false},
    {"detect_negative", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kIsnanInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kLayerNormInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
    {"weight", "T", bit(DType::F32) | bit(DType::F64)},
    {"bias", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kLayerNormAttrs[] = {
    {"axis", AttrValue::Int, false, false},
    {"eps", AttrValue::Float, false, false},
};
inline constexpr InputInfo kLayerNormGradInputs[] = {
    {"dy", "T", bit(DType::F32) | bit(DType::F64)},
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
    {"weight", "T", bit(DType::F32) | bit(DType::F64)},
    {"mean", "T", bit(DType::F32) | bit(DType::F64)},
    {"rstd", "T", bit(DType::F32) | bit(DType::F64)},
    {"dmean", "T", bit(DType::F32) | bit(DType::F64)},
    {"drstd", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kLayerNormGradAttrs[] = {
    {"axis", AttrValue::Int, false, false},
    {"eps", AttrValue::Float, false, false},
};
inline constexpr InputInfo kLeakyReluInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kLeakyReluAttrs[] = {
    {"negative_slope", AttrValue::Float, false, false},
};
inline constexpr InputInfo kLeakyReluGradInputs[] = {
    {"dy", "T", bit(DType::F32) | bit(DType::F64)},
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kLeakyReluGradAttrs[] = {
    {"negative_slope", AttrValue::Float, false, false},
};
inline constexpr InputInfo kLessInputs[] = {
    {"a", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
    {"b", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr InputInfo kLessEqualInputs[] = {
    {"a", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
    {"b", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr InputInfo kLogInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kLogSoftmaxInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kLogSoftmaxAttrs[] = {
    {"axis", AttrValue::Int, false, false},
};
inline constexpr InputInfo kLogicalAndInputs[] = {
    {"a", "T", bit(DType::Bool)},
    {"b", "T", bit(DType::Bool)},
};
inline constexpr InputInfo kLogicalNotInputs[] = {
    {"x", "T", bit(DType::Bool)},
};
inline constexpr InputInfo kLogicalOrInputs[] = {
    {"a", "T", bit(DType::Bool)},
    {"b", "T", bit(DType::Bool)},
};
inline constexpr InputInfo kLogicalXorInputs[] = {
    {"a", "T", bit(DType::Bool)},
    {"b", "T", bit(DType::Bool)},
};
inline constexpr InputInfo kLstmCellInputs[] = {
    {"gates", "T", bit(DType::F32) | bit(DType::F64)},
    {"c_prev", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kLstmCellGradInputs[] = {
    {"dh", "T", bit(DType::F32) | bit(DType::F64)},
    {"dc", "T", bit(DType::F32) | bit(DType::F64)},
    {"gates", "T", bit(DType::F32) | bit(DType::F64)},
    {"c_prev", "T", bit(DType::F32) | bit(DType::F64)},
    {"c", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kMatmulInputs[] = {
    {"a", "T", bit(DType::F32) | bit(DType::F64)},
    {"b", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kMatmulAttrs[] = {
    {"transpose_a", AttrValue::Bool, false, false},
    {"transpose_b", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kMaxInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr AttrInfo kMaxAttrs[] = {
    {"axes", AttrValue::Ints, false, true},
    {"keepdims", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kMaxPool2dInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kMaxPool2dAttrs[] = {
    {"kernel_size", AttrValue::Ints, true, false},
    {"stride", AttrValue::Ints, true, false},
    {"padding", AttrValue::Ints, true, false},
};
inline constexpr InputInfo kMaxPool2dGatherInputs[] = {
    {"g", "T", bit(DType::F32) | bit(DType::F64)},
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kMaxPool2dGatherAttrs[] = {
    {"kernel_size", AttrValue::Ints, true, false},
    {"stride", AttrValue::Ints, true, false},
    {"padding", AttrValue::Ints, true, false},
};
inline constexpr InputInfo kMaxPool2dGradInputs[] = {
    {"dy", "T", bit(DType::F32) | bit(DType::F64)},
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kMaxPool2dGradAttrs[] = {
    {"kernel_size", AttrValue::Ints, true, false},
    {"stride", AttrValue::Ints, true, false},
    {"padding", AttrValue::Ints, true, false},
};
inline constexpr InputInfo kMaximumInputs[] = {
    {"a", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
    {"b", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr InputInfo kMeanInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kMeanAttrs[] = {
    {"axes", AttrValue::Ints, false, true},
    {"keepdims", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kMinInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr AttrInfo kMinAttrs[] = {
    {"axes", AttrValue::Ints, false, true},
    {"keepdims", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kMinimumInputs[] = {
    {"a", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
    {"b", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr InputInfo kModInputs[] = {
    {"a", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
    {"b", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr AttrInfo kModAttrs[] = {
    {"fmod", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kMulInputs[] = {
    {"a", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
    {"b", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr InputInfo kNegInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr InputInfo kOneHotInputs[] = {
    {"indices", "", bit(DType::I32) | bit(DType::I64)},
};
inline constexpr AttrInfo kOneHotAttrs[] = {
    {"depth", AttrValue::Int, true, false},
    {"dtype", AttrValue::DTypeKind, false, false},
};
inline constexpr InputInfo kPadInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr AttrInfo kPadAttrs[] = {
    {"pads", AttrValue::Ints, true, false},
    {"mode", AttrValue::String, false, false},
    {"value", AttrValue::Float, false, false},
};
inline constexpr InputInfo kPadGradInputs[] = {
    {"g", "T", bit(DType::F32) | bit(DType::F64)},
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kPadGradAttrs[] = {
    {"pads", AttrValue::Ints, true, false},
    {"mode", AttrValue::String, false, false},
};
inline constexpr InputInfo kPowInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kPowAttrs[] = {
    {"exponent", AttrValue::Float, true, false},
};
inline constexpr InputInfo kPowerInputs[] = {
    {"a", "T", bit(DType::F32) | bit(DType::F64)},
    {"b", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kRandomNormalInputs[] = {
    {"step", "", bit(DType::I64)},
};
inline constexpr AttrInfo kRandomNormalAttrs[] = {
    {"mean", AttrValue::Float, false, false},
    {"stddev", AttrValue::Float, false, false},
    {"seed", AttrValue::Int, true, false},
    {"shape", AttrValue::Ints, true, false},
    {"dtype", AttrValue::DTypeKind, false, false},
};
inline constexpr InputInfo kRandomNormalLikeInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
    {"step", "", bit(DType::I64)},
};
inline constexpr AttrInfo kRandomNormalLikeAttrs[] = {
    {"mean", AttrValue::Float, false, false},
    {"stddev", AttrValue::Float, false, false},
    {"seed", AttrValue::Int, true, false},
    {"dtype", AttrValue::DTypeKind, false, true},
};
inline constexpr InputInfo kRandomUniformInputs[] = {
    {"step", "", bit(DType::I64)},
};
inline constexpr AttrInfo kRandomUniformAttrs[] = {
    {"minval", AttrValue::Float, false, false},
    {"maxval", AttrValue::Float, false, false},
    {"seed", AttrValue::Int, true, false},
    {"shape", AttrValue::Ints, true, false},
    {"dtype", AttrValue::DTypeKind, false, false},
};
inline constexpr InputInfo kRandomUniformLikeInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
    {"step", "", bit(DType::I64)},
};
inline constexpr AttrInfo kRandomUniformLikeAttrs[] = {
    {"minval", AttrValue::Float, false, false},
    {"maxval", AttrValue::Float, false, false},
    {"seed", AttrValue::Int, true, false},
    {"dtype", AttrValue::DTypeKind, false, true},
};
inline constexpr InputInfo kReciprocalInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kReluInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr InputInfo kReluGradInputs[] = {
    {"g", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
    {"x", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr InputInfo kReshapeInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr AttrInfo kReshapeAttrs[] = {
    {"shape", AttrValue::Ints, true, false},
};
inline constexpr InputInfo kReshapeLikeInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
    {"like", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr InputInfo kResizeInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr AttrInfo kResizeAttrs[] = {
    {"sizes", AttrValue::Ints, true, false},
    {"scales", AttrValue::Floats, false, true},
    {"mode", AttrValue::String, false, false},
    {"coordinate_transformation_mode", AttrValue::String, false, false},
    {"nearest_mode", AttrValue::String, false, false},
    {"exclude_outside", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kResizeGradInputs[] = {
    {"dy", "T", bit(DType::F32) | bit(DType::F64)},
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kResizeGradAttrs[] = {
    {"sizes", AttrValue::Ints, true, false},
    {"scales", AttrValue::Floats, false, true},
    {"mode", AttrValue::String, false, false},
    {"coordinate_transformation_mode", AttrValue::String, false, false},
    {"nearest_mode", AttrValue::String, false, false},
    {"exclude_outside", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kRoundInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kScaledDotProductAttentionInputs[] = {
    {"q", "T", bit(DType::F32) | bit(DType::F64)},
    {"k", "T", bit(DType::F32) | bit(DType::F64)},
    {"v", "T", bit(DType::F32) | bit(DType::F64)},
    {"mask", "", bit(DType::Bool)},
};
inline constexpr AttrInfo kScaledDotProductAttentionAttrs[] = {
    {"scale", AttrValue::Float, true, false},
    {"causal", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kScaledDotProductAttentionGradInputs[] = {
    {"q", "T", bit(DType::F32) | bit(DType::F64)},
    {"k", "T", bit(DType::F32) | bit(DType::F64)},
    {"v", "T", bit(DType::F32) | bit(DType::F64)},
    {"mask", "", bit(DType::Bool)},
    {"out", "T", bit(DType::F32) | bit(DType::F64)},
    {"lse", "T", bit(DType::F32) | bit(DType::F64)},
    {"dout", "T", bit(DType::F32) | bit(DType::F64)},
    {"dlse", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kScaledDotProductAttentionGradAttrs[] = {
    {"scale", AttrValue::Float, true, false},
    {"causal", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kSgdMomentumUpdateInputs[] = {
    {"w", "T", bit(DType::F32) | bit(DType::F64)},
    {"g", "T", bit(DType::F32) | bit(DType::F64)},
    {"velocity", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kSgdMomentumUpdateAttrs[] = {
    {"lr", AttrValue::Float, true, false},
    {"momentum", AttrValue::Float, true, false},
    {"nesterov", AttrValue::Bool, false, false},
    {"weight_decay", AttrValue::Float, false, false},
    {"grad_scale", AttrValue::Float, false, false},
};
inline constexpr int kSgdMomentumUpdateInplace[] = {0, 0, 1, 2};
inline constexpr InputInfo kSgdUpdateInputs[] = {
    {"w", "T", bit(DType::F32) | bit(DType::F64)},
    {"g", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kSgdUpdateAttrs[] = {
    {"lr", AttrValue::Float, true, false},
    {"weight_decay", AttrValue::Float, false, false},
    {"grad_scale", AttrValue::Float, false, false},
};
inline constexpr int kSgdUpdateInplace[] = {0, 0};
inline constexpr InputInfo kSigmoidInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kSignInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr InputInfo kSiluInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kSinInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kSinhInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kSliceInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr AttrInfo kSliceAttrs[] = {
    {"starts", AttrValue::Ints, true, false},
    {"ends", AttrValue::Ints, true, false},
    {"axes", AttrValue::Ints, false, true},
    {"steps", AttrValue::Ints, false, true},
};
inline constexpr InputInfo kSliceGradInputs[] = {
    {"g", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
    {"x", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr AttrInfo kSliceGradAttrs[] = {
    {"starts", AttrValue::Ints, true, false},
    {"ends", AttrValue::Ints, true, false},
    {"axes", AttrValue::Ints, false, true},
    {"steps", AttrValue::Ints, false, true},
};
inline constexpr InputInfo kSoftmaxInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kSoftmaxAttrs[] = {
    {"axis", AttrValue::Int, false, false},
};
inline constexpr InputInfo kSoftmaxCrossEntropyInputs[] = {
    {"logits", "", bit(DType::F32) | bit(DType::F64)},
    {"labels", "", bit(DType::I32) | bit(DType::I64)},
};
inline constexpr AttrInfo kSoftmaxCrossEntropyAttrs[] = {
    {"reduction", AttrValue::String, false, false},
};
inline constexpr InputInfo kSoftmaxCrossEntropyGradInputs[] = {
    {"logits", "T", bit(DType::F32) | bit(DType::F64)},
    {"labels", "", bit(DType::I32) | bit(DType::I64)},
    {"g", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kSoftmaxCrossEntropyGradAttrs[] = {
    {"reduction", AttrValue::String, false, false},
};
inline constexpr InputInfo kSoftplusInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kSoftplusAttrs[] = {
    {"beta", AttrValue::Float, false, false},
    {"threshold", AttrValue::Float, false, false},
};
inline constexpr InputInfo kSoftplusGradInputs[] = {
    {"dy", "T", bit(DType::F32) | bit(DType::F64)},
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kSoftplusGradAttrs[] = {
    {"beta", AttrValue::Float, false, false},
    {"threshold", AttrValue::Float, false, false},
};
inline constexpr InputInfo kSplitInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr AttrInfo kSplitAttrs[] = {
    {"axis", AttrValue::Int, true, false},
    {"sizes", AttrValue::Ints, true, false},
};
inline constexpr InputInfo kSqrtInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kSqueezeInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr AttrInfo kSqueezeAttrs[] = {
    {"axes", AttrValue::Ints, false, true},
};
inline constexpr InputInfo kStopGradientInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr InputInfo kSubInputs[] = {
    {"a", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
    {"b", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr InputInfo kSumInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
};
inline constexpr AttrInfo kSumAttrs[] = {
    {"axes", AttrValue::Ints, false, true},
    {"keepdims", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kSumToInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64)},
    {"like", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr InputInfo kTakeAlongAxisInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
    {"indices", "", bit(DType::I64)},
};
inline constexpr AttrInfo kTakeAlongAxisAttrs[] = {
    {"axis", AttrValue::Int, false, false},
};
inline constexpr InputInfo kTakeAlongAxisGradInputs[] = {
    {"g", "T", bit(DType::F32) | bit(DType::F64)},
    {"indices", "", bit(DType::I64)},
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kTakeAlongAxisGradAttrs[] = {
    {"axis", AttrValue::Int, false, false},
};
inline constexpr InputInfo kTanInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kTanhInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr InputInfo kTileInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr AttrInfo kTileAttrs[] = {
    {"repeats", AttrValue::Ints, true, false},
};
inline constexpr InputInfo kTopkInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kTopkAttrs[] = {
    {"k", AttrValue::Int, true, false},
    {"axis", AttrValue::Int, false, false},
    {"largest", AttrValue::Bool, false, false},
    {"sorted", AttrValue::Bool, false, false},
};
inline constexpr InputInfo kTransposeInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr AttrInfo kTransposeAttrs[] = {
    {"perm", AttrValue::Ints, false, true},
};
inline constexpr InputInfo kTrilInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr AttrInfo kTrilAttrs[] = {
    {"diagonal", AttrValue::Int, false, false},
};
inline constexpr InputInfo kTriuInputs[] = {
    {"x", "", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};
inline constexpr AttrInfo kTriuAttrs[] = {
    {"diagonal", AttrValue::Int, false, false},
};
inline constexpr InputInfo kUpsampleNearest2dInputs[] = {
    {"x", "T", bit(DType::F32) | bit(DType::F64)},
};
inline constexpr AttrInfo kUpsampleNearest2dAttrs[] = {
    {"scales", AttrValue::Ints, true, false},
};
inline constexpr InputInfo kWhereInputs[] = {
    {"cond", "", bit(DType::Bool)},
    {"x", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
    {"y", "T", bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool)},
};

// Sorted by name (find_op does a binary search).
inline constexpr OpInfo kOps[] = {
    {"abs", kAbsInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"acos", kAcosInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"acosh", kAcoshInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"adam_update", kAdamUpdateInputs, 5, false, kAdamUpdateAttrs, 7, kAdamUpdateInplace, 3, bit(DType::F32) | bit(DType::F64), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"add", kAddInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"allreduce_start", kAllreduceStartInputs, 1, true, kAllreduceStartAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, true, true, Schedule::Asap},
    {"allreduce_wait", kAllreduceWaitInputs, 1, true, kAllreduceWaitAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, true, true, Schedule::Alap},
    {"argmax", kArgmaxInputs, 1, false, kArgmaxAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"argmin", kArgminInputs, 1, false, kArgminAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"asin", kAsinInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"asinh", kAsinhInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"assign", kAssignInputs, 2, false, nullptr, 0, kAssignInplace, 1, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"atan", kAtanInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"atanh", kAtanhInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"avg_pool2d", kAvgPool2dInputs, 1, false, kAvgPool2dAttrs, 4, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"avg_pool2d_grad", kAvgPool2dGradInputs, 2, false, kAvgPool2dGradAttrs, 4, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"batch_norm", kBatchNormInputs, 5, false, kBatchNormAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, 0u, nullptr, 0, false, false, Schedule::Any},
    {"batch_norm_train", kBatchNormTrainInputs, 3, false, kBatchNormTrainAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"batch_norm_train_grad", kBatchNormTrainGradInputs, 7, false, kBatchNormTrainGradAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"batch_norm_update_stats", kBatchNormUpdateStatsInputs, 4, false, kBatchNormUpdateStatsAttrs, 2, kBatchNormUpdateStatsInplace, 2, bit(DType::F32) | bit(DType::F64), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"broadcast_like", kBroadcastLikeInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"broadcast_to", kBroadcastToInputs, 1, false, kBroadcastToAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"cast", kCastInputs, 1, false, kCastAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"ceil", kCeilInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"concat", kConcatInputs, 1, true, kConcatAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"constant", nullptr, 0, false, kConstantAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, true, false, 0u, nullptr, 0, false, false, Schedule::Any},
    {"conv2d", kConv2dInputs, 2, false, kConv2dAttrs, 4, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"conv2d_grad_input", kConv2dGradInputInputs, 2, false, kConv2dGradInputAttrs, 5, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"conv2d_grad_weight", kConv2dGradWeightInputs, 2, false, kConv2dGradWeightAttrs, 5, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"conv_transpose2d", kConvTranspose2dInputs, 2, false, kConvTranspose2dAttrs, 5, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, 0u, nullptr, 0, false, false, Schedule::Any},
    {"cos", kCosInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"cosh", kCoshInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"cumsum", kCumsumInputs, 1, false, kCumsumAttrs, 3, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"div", kDivInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"dropout", kDropoutInputs, 1, false, kDropoutAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, 0u, nullptr, 0, false, false, Schedule::Any},
    {"dropout_train", kDropoutTrainInputs, 2, false, kDropoutTrainAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"einsum", kEinsumInputs, 1, true, kEinsumAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, 0u, nullptr, 0, false, false, Schedule::Any},
    {"embedding", kEmbeddingInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::I32) | bit(DType::I64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"embedding_grad", kEmbeddingGradInputs, 3, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"equal", kEqualInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"erf", kErfInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"exp", kExpInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"expand_dims", kExpandDimsInputs, 1, false, kExpandDimsAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, true, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"floor", kFloorInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"fused_elementwise", kFusedElementwiseInputs, 1, true, kFusedElementwiseAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"fused_matmul", kFusedMatmulInputs, 3, true, kFusedMatmulAttrs, 3, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"fused_reduce", kFusedReduceInputs, 1, true, kFusedReduceAttrs, 4, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"gelu", kGeluInputs, 1, false, kGeluAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"gelu_grad", kGeluGradInputs, 2, false, kGeluGradAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"greater", kGreaterInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"greater_equal", kGreaterEqualInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"gru_cell", kGruCellInputs, 3, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"gru_cell_grad", kGruCellGradInputs, 4, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"identity", kIdentityInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, true, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"instance_norm", kInstanceNormInputs, 3, false, kInstanceNormAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, 0u, nullptr, 0, false, false, Schedule::Any},
    {"int_div", kIntDivInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::I32) | bit(DType::I64), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"isinf", kIsinfInputs, 1, false, kIsinfAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"isnan", kIsnanInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"layer_norm", kLayerNormInputs, 3, false, kLayerNormAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"layer_norm_grad", kLayerNormGradInputs, 7, false, kLayerNormGradAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"leaky_relu", kLeakyReluInputs, 1, false, kLeakyReluAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"leaky_relu_grad", kLeakyReluGradInputs, 2, false, kLeakyReluGradAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"less", kLessInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"less_equal", kLessEqualInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"log", kLogInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"log_softmax", kLogSoftmaxInputs, 1, false, kLogSoftmaxAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"logical_and", kLogicalAndInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::Bool), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"logical_not", kLogicalNotInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::Bool), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"logical_or", kLogicalOrInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::Bool), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"logical_xor", kLogicalXorInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::Bool), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"lstm_cell", kLstmCellInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"lstm_cell_grad", kLstmCellGradInputs, 5, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"matmul", kMatmulInputs, 2, false, kMatmulAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"max", kMaxInputs, 1, false, kMaxAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"max_pool2d", kMaxPool2dInputs, 1, false, kMaxPool2dAttrs, 3, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"max_pool2d_gather", kMaxPool2dGatherInputs, 2, false, kMaxPool2dGatherAttrs, 3, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"max_pool2d_grad", kMaxPool2dGradInputs, 2, false, kMaxPool2dGradAttrs, 3, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"maximum", kMaximumInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"mean", kMeanInputs, 1, false, kMeanAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"min", kMinInputs, 1, false, kMinAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"minimum", kMinimumInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"mod", kModInputs, 2, false, kModAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"mul", kMulInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"neg", kNegInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"one_hot", kOneHotInputs, 1, false, kOneHotAttrs, 2, nullptr, 0, bit(DType::I32) | bit(DType::I64), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"pad", kPadInputs, 1, false, kPadAttrs, 3, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"pad_grad", kPadGradInputs, 2, false, kPadGradAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"pow", kPowInputs, 1, false, kPowAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"power", kPowerInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"random_normal", kRandomNormalInputs, 1, false, kRandomNormalAttrs, 5, nullptr, 0, bit(DType::I64), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"random_normal_like", kRandomNormalLikeInputs, 2, false, kRandomNormalLikeAttrs, 4, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"random_uniform", kRandomUniformInputs, 1, false, kRandomUniformAttrs, 5, nullptr, 0, bit(DType::I64), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"random_uniform_like", kRandomUniformLikeInputs, 2, false, kRandomUniformLikeAttrs, 4, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"reciprocal", kReciprocalInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"relu", kReluInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"relu_grad", kReluGradInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"reshape", kReshapeInputs, 1, false, kReshapeAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, true, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"reshape_like", kReshapeLikeInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, true, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"resize", kResizeInputs, 1, false, kResizeAttrs, 6, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"resize_grad", kResizeGradInputs, 2, false, kResizeGradAttrs, 6, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"round", kRoundInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"scaled_dot_product_attention", kScaledDotProductAttentionInputs, 4, false, kScaledDotProductAttentionAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"scaled_dot_product_attention_grad", kScaledDotProductAttentionGradInputs, 8, false, kScaledDotProductAttentionGradAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"sgd_momentum_update", kSgdMomentumUpdateInputs, 3, false, kSgdMomentumUpdateAttrs, 5, kSgdMomentumUpdateInplace, 2, bit(DType::F32) | bit(DType::F64), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"sgd_update", kSgdUpdateInputs, 2, false, kSgdUpdateAttrs, 3, kSgdUpdateInplace, 1, bit(DType::F32) | bit(DType::F64), false, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"sigmoid", kSigmoidInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"sign", kSignInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), true, false, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"silu", kSiluInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, 0u, nullptr, 0, false, false, Schedule::Any},
    {"sin", kSinInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"sinh", kSinhInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"slice", kSliceInputs, 1, false, kSliceAttrs, 4, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"slice_grad", kSliceGradInputs, 2, false, kSliceGradAttrs, 4, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"softmax", kSoftmaxInputs, 1, false, kSoftmaxAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"softmax_cross_entropy", kSoftmaxCrossEntropyInputs, 2, false, kSoftmaxCrossEntropyAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"softmax_cross_entropy_grad", kSoftmaxCrossEntropyGradInputs, 3, false, kSoftmaxCrossEntropyGradAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"softplus", kSoftplusInputs, 1, false, kSoftplusAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"softplus_grad", kSoftplusGradInputs, 2, false, kSoftplusGradAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"split", kSplitInputs, 1, false, kSplitAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"sqrt", kSqrtInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"squeeze", kSqueezeInputs, 1, false, kSqueezeAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, true, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"stop_gradient", kStopGradientInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, true, false, false, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"sub", kSubInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"sum", kSumInputs, 1, false, kSumAttrs, 2, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"sum_to", kSumToInputs, 2, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"take_along_axis", kTakeAlongAxisInputs, 2, false, kTakeAlongAxisAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"take_along_axis_grad", kTakeAlongAxisGradInputs, 3, false, kTakeAlongAxisGradAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"tan", kTanInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"tanh", kTanhInputs, 1, false, nullptr, 0, nullptr, 0, bit(DType::F32) | bit(DType::F64), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"tile", kTileInputs, 1, false, kTileAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"topk", kTopkInputs, 1, false, kTopkAttrs, 4, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"transpose", kTransposeInputs, 1, false, kTransposeAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"tril", kTrilInputs, 1, false, kTrilAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"triu", kTriuInputs, 1, false, kTriuAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64) | bit(DType::I32) | bit(DType::I64) | bit(DType::Bool), false, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
    {"upsample_nearest2d", kUpsampleNearest2dInputs, 1, false, kUpsampleNearest2dAttrs, 1, nullptr, 0, bit(DType::F32) | bit(DType::F64), false, false, false, true, 0u, nullptr, 0, false, false, Schedule::Any},
    {"where", kWhereInputs, 3, false, nullptr, 0, nullptr, 0, bit(DType::Bool), true, false, false, true, kDeviceCpu | kDeviceCuda, nullptr, 0, false, false, Schedule::Any},
};
inline constexpr int kNumOps = 135;

// The schema of op `name`, or nullptr for an op the registry does not know.
inline const OpInfo* find_op(const std::string& name) {
  int lo = 0, hi = kNumOps;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    int c = std::strcmp(kOps[mid].name, name.c_str());
    if (c == 0) return &kOps[mid];
    if (c < 0) lo = mid + 1; else hi = mid;
  }
  return nullptr;
}

inline bool allows_dtype(const OpInfo& op, DType t) {
  return dtype_valid(t) && (op.dispatch_dtypes & bit(t)) != 0;
}

}  // namespace schema

// One struct per op: its attrs, typed, read from a step with the registry's defaults.
namespace attrs {

// abs: Elementwise: y = |x|. Dtypes: float32, float64, int32, int64.
struct Abs {
  explicit Abs(const KernelArgs&) {}
};

// acos: Elementwise: y = arccos x in [0, π] (NaN outside [-1, 1]). Dtypes: float32, float64.
struct Acos {
  explicit Acos(const KernelArgs&) {}
};

// acosh: Elementwise: y = arccosh x >= 0 (NaN below 1). Dtypes: float32, float64.
struct Acosh {
  explicit Acosh(const KernelArgs&) {}
};

// adam_update: Adam (Kingma & Ba) with bias correction at step t (input 4, counted from 1): m ← β1·m + (1-β1)·g; v ← β2·v + (1-β2)·g²; w ← w - lr·m̂/(√v̂ + ε), m̂ = 
struct AdamUpdate {
  double lr;  // learning rate
  double beta1 = 0.9;  // decay of the first moment
  double beta2 = 0.999;  // decay of the second moment
  double eps = 1e-08;  // added to the denominator
  double weight_decay = 0.0;  // L2 (or decoupled) weight decay
  bool decoupled = false;  // AdamW: decay the weights, not the gradient
  double grad_scale = 1.0;  // g ← grad_scale · g first (one multiply, in the variable's dtype): data-parallel training folds the 1/N of the gradient average in here
  explicit AdamUpdate(const KernelArgs& a) {
    if (!a.has("lr")) a.fail("missing attr 'lr'");
    lr = a.attr_float("lr");
    if (a.has("beta1")) beta1 = a.attr_float("beta1");
    if (a.has("beta2")) beta2 = a.attr_float("beta2");
    if (a.has("eps")) eps = a.attr_float("eps");
    if (a.has("weight_decay")) weight_decay = a.attr_float("weight_decay");
    if (a.has("decoupled")) decoupled = a.attr_bool("decoupled", false);
    if (a.has("grad_scale")) grad_scale = a.attr_float("grad_scale");
  }
};

// add: Elementwise with numpy broadcasting: y = a + b. Both inputs have one dtype (float32, float64, int32, int64).
struct Add {
  explicit Add(const KernelArgs&) {}
};

// allreduce_start: Start the in-place sum over all ranks of one gradient bucket: after the matching allreduce_wait, every output holds Σ_ranks input (returns at once; th
struct AllreduceStart {
  int64_t bucket = 0;  // the communicator slot of this bucket, in [0, 2^31)
  explicit AllreduceStart(const KernelArgs& a) {
    if (!a.has("bucket")) a.fail("missing attr 'bucket'");
    bucket = a.attr_int("bucket");
  }
};

// allreduce_wait: Wait until the sum allreduce_start began for attr bucket is in place (host memory: blocks; a device stream: orders the stream after it); outputs the s
struct AllreduceWait {
  int64_t bucket = 0;  // the communicator slot of this bucket, in [0, 2^31)
  explicit AllreduceWait(const KernelArgs& a) {
    if (!a.has("bucket")) a.fail("missing attr 'bucket'");
    bucket = a.attr_int("bucket");
  }
};

// argmax: y = the index (int64) of the largest item along 'axis'; the first of equal maxima; NaN counts as the largest (the first NaN wins, torch/numpy). The ax
struct Argmax {
  int64_t axis = -1;  // the axis searched
  bool keepdims = false;  // keep the axis with size 1
  explicit Argmax(const KernelArgs& a) {
    if (a.has("axis")) axis = a.attr_int("axis");
    if (a.has("keepdims")) keepdims = a.attr_bool("keepdims", false);
  }
};

// argmin: y = the index (int64) of the smallest item along 'axis'; the first of equal minima (ONNX ArgMin with select_last_index=0); NaN counts as the smallest 
struct Argmin {
  int64_t axis = -1;  // the axis searched
  bool keepdims = false;  // keep the axis with size 1
  explicit Argmin(const KernelArgs& a) {
    if (a.has("axis")) axis = a.attr_int("axis");
    if (a.has("keepdims")) keepdims = a.attr_bool("keepdims", false);
  }
};

// asin: Elementwise: y = arcsin x in [-π/2, π/2] (NaN outside [-1, 1]). Dtypes: float32, float64.
struct Asin {
  explicit Asin(const KernelArgs&) {}
};

// asinh: Elementwise: y = arcsinh x. Dtypes: float32, float64.
struct Asinh {
  explicit Asinh(const KernelArgs&) {}
};

// assign: var ← value: the output is the variable's new content, written in its storage.
struct Assign {
  explicit Assign(const KernelArgs&) {}
};

// atan: Elementwise: y = arctan x in (-π/2, π/2). Dtypes: float32, float64.
struct Atan {
  explicit Atan(const KernelArgs&) {}
};

// atanh: Elementwise: y = arctanh x (±inf at ±1, NaN outside [-1, 1]). Dtypes: float32, float64.
struct Atanh {
  explicit Atanh(const KernelArgs&) {}
};

// avg_pool2d: y[n,c,i,j] = sum of x[n,c] over window (i, j) / divisor (NCHW; divisor k_h·k_w with count_include_pad, else the number of input elements in the window
struct AvgPool2d {
  std::vector<int64_t> kernel_size;  // window (k_h, k_w), each > 0
  std::vector<int64_t> stride;  // step between windows (s_h, s_w), each > 0
  std::vector<int64_t> padding;  // implicit padding (p_h, p_w) on both sides, 0 <= p <= k // 2
  bool count_include_pad = true;  // divide by k_h·k_w (True) or by the number of input elements in the window
  explicit AvgPool2d(const KernelArgs& a) {
    if (!a.has("kernel_size")) a.fail("missing attr 'kernel_size'");
    kernel_size = a.attr_ints("kernel_size");
    if (!a.has("stride")) a.fail("missing attr 'stride'");
    stride = a.attr_ints("stride");
    if (!a.has("padding")) a.fail("missing attr 'padding'");
    padding = a.attr_ints("padding");
    if (a.has("count_include_pad")) count_include_pad = a.attr_bool("count_include_pad", false);
  }
};

// avg_pool2d_grad: The gradient of avg_pool2d: zeros of x's shape, dy[n,c,i,j] / divisor added over window (i, j). Only the shape of x is read.
struct AvgPool2dGrad {
  std::vector<int64_t> kernel_size;  // window (k_h, k_w), each > 0
  std::vector<int64_t> stride;  // step between windows (s_h, s_w), each > 0
  std::vector<int64_t> padding;  // implicit padding (p_h, p_w) on both sides, 0 <= p <= k // 2
  bool count_include_pad = true;  // divide by k_h·k_w (True) or by the number of input elements in the window
  explicit AvgPool2dGrad(const KernelArgs& a) {
    if (!a.has("kernel_size")) a.fail("missing attr 'kernel_size'");
    kernel_size = a.attr_ints("kernel_size");
    if (!a.has("stride")) a.fail("missing attr 'stride'");
    stride = a.attr_ints("stride");
    if (!a.has("padding")) a.fail("missing attr 'padding'");
    padding = a.attr_ints("padding");
    if (a.has("count_include_pad")) count_include_pad = a.attr_bool("count_include_pad", false);
  }
};

// batch_norm: Batch norm, inference form: y = (x - running_mean) / √(running_var + eps) · weight + bias per channel (axis 1). In a training plan select_mode makes i
struct BatchNorm {
  bool has_momentum = false;  // false: the attr is None
  double momentum;  // weight of the batch statistic in the running update, in [0, 1]; None: the cumulative average of the batches seen (counted in <scope>/num_batches_tracked)
  double eps = 1e-05;  // added to the variance before the square root
  explicit BatchNorm(const KernelArgs& a) {
    has_momentum = a.has("momentum");
    if (a.has("momentum")) momentum = a.attr_float("momentum");
    if (a.has("eps")) eps = a.attr_float("eps");
  }
};

// batch_norm_train: Batch norm, training form: mean, var = the mean and biased variance of x over every axis but 1; y = (x - mean) / √(var + eps) · weight + bias. Outputs
struct BatchNormTrain {
  double eps = 1e-05;  // added to the variance before the square root
  explicit BatchNormTrain(const KernelArgs& a) {
    if (a.has("eps")) eps = a.attr_float("eps");
  }
};

// batch_norm_train_grad: The gradient of batch_norm_train (dy, dmean, dvar the gradients of its outputs): with s = 1/√(var + eps), x̂ = (x - mean)·s, n the elements per channe
struct BatchNormTrainGrad {
  double eps = 1e-05;  // added to the variance before the square root
  explicit BatchNormTrainGrad(const KernelArgs& a) {
    if (a.has("eps")) eps = a.attr_float("eps");
  }
};

// batch_norm_update_stats: running_mean ← (1 - momentum)·running_mean + momentum·mean; running_var ← (1 - momentum)·running_var + momentum·var·count/(count - 1) (the unbiased ba
struct BatchNormUpdateStats {
  double momentum;  // weight of the batch statistic, in [0, 1]
  int64_t count = 0;  // elements per channel in the batch (n >= 2)
  explicit BatchNormUpdateStats(const KernelArgs& a) {
    if (!a.has("momentum")) a.fail("missing attr 'momentum'");
    momentum = a.attr_float("momentum");
    if (!a.has("count")) a.fail("missing attr 'count'");
    count = a.attr_int("count");
  }
};

// broadcast_like: y = x broadcast (numpy rules) to the shape of 'like'; only that shape is read.
struct BroadcastLike {
  explicit BroadcastLike(const KernelArgs&) {}
};

// broadcast_to: y = x repeated along broadcast dims to 'shape' (numpy.broadcast_to), as a real array.
struct BroadcastTo {
  std::vector<int64_t> shape;  // the output shape
  explicit BroadcastTo(const KernelArgs& a) {
    if (!a.has("shape")) a.fail("missing attr 'shape'");
    shape = a.attr_ints("shape");
  }
};

// cast: Convert to dtype 'to'. Floats to ints truncate toward zero and saturate: NaN becomes 0, +inf and values >= 2^(bits-1) the int's max, -inf and values <
struct Cast {
  DType to = DType::Invalid;  // the output dtype
  explicit Cast(const KernelArgs& a) {
    if (!a.has("to")) a.fail("missing attr 'to'");
    to = a.attr_dtype("to", DType::Invalid);
  }
};

// ceil: Elementwise: y = ⌈x⌉, the smallest integer >= x (NaN, ±inf, ±0 unchanged). Dtypes: float32, float64.
struct Ceil {
  explicit Ceil(const KernelArgs&) {}
};

// concat: Join inputs along 'axis'; other dims must match. One or more inputs of one dtype.
struct Concat {
  int64_t axis = 0;  // the axis joined along
  explicit Concat(const KernelArgs& a) {
    if (!a.has("axis")) a.fail("missing attr 'axis'");
    axis = a.attr_int("axis");
  }
};

// constant: A value fixed at build time (attr 'value', a tensor). The compiler stores it as read-only data; large constants are saved in the external weights file
struct Constant {
  // value: a tensor attr, stored by the compiler as constant data  // the value, any dtype and shape
  explicit Constant(const KernelArgs&) {}
};

// conv2d: y[n,o,i,j] = Σ_{c,a,b} x_pad[n, g·C/g + c, i·s_h + a·d_h, j·s_w + b·d_w] · w[o,c,a,b] (NCHW x, OIHW w, g = o // (O/g), x_pad zero-padded by pads = (to
struct Conv2d {
  std::vector<int64_t> stride;  // step between output positions (s_h, s_w), each > 0
  std::vector<int64_t> pads;  // zero padding (top, left, bottom, right), each >= 0
  std::vector<int64_t> dilation;  // spacing of the kernel taps (d_h, d_w), each > 0
  int64_t groups = 1;  // channel groups g > 0, dividing the input and output channels
  explicit Conv2d(const KernelArgs& a) {
    if (!a.has("stride")) a.fail("missing attr 'stride'");
    stride = a.attr_ints("stride");
    if (!a.has("pads")) a.fail("missing attr 'pads'");
    pads = a.attr_ints("pads");
    if (!a.has("dilation")) a.fail("missing attr 'dilation'");
    dilation = a.attr_ints("dilation");
    if (a.has("groups")) groups = a.attr_int("groups");
  }
};

// conv2d_grad_input: The gradient of conv2d in x (its adjoint): dx[n,c,h,w] = Σ dy[n,o,i,j] · w[o,c',a,b] over the (o, i, j, a, b) whose tap reads x[n,c,h,w]; x's (H, W) i
struct Conv2dGradInput {
  std::vector<int64_t> stride;  // step between output positions (s_h, s_w), each > 0
  std::vector<int64_t> pads;  // zero padding (top, left, bottom, right), each >= 0
  std::vector<int64_t> dilation;  // spacing of the kernel taps (d_h, d_w), each > 0
  int64_t groups = 1;  // channel groups g > 0, dividing the input and output channels
  std::vector<int64_t> input_size;  // (H, W) of the convolution's input
  explicit Conv2dGradInput(const KernelArgs& a) {
    if (!a.has("stride")) a.fail("missing attr 'stride'");
    stride = a.attr_ints("stride");
    if (!a.has("pads")) a.fail("missing attr 'pads'");
    pads = a.attr_ints("pads");
    if (!a.has("dilation")) a.fail("missing attr 'dilation'");
    dilation = a.attr_ints("dilation");
    if (a.has("groups")) groups = a.attr_int("groups");
    if (!a.has("input_size")) a.fail("missing attr 'input_size'");
    input_size = a.attr_ints("input_size");
  }
};

// conv2d_grad_weight: The gradient of conv2d in w (its adjoint): dw[o,c,a,b] = Σ_{n,i,j} dy[n,o,i,j] · x_pad[n, g·C/g + c, i·s_h + a·d_h, j·s_w + b·d_w]; w's (k_h, k_w) is 
struct Conv2dGradWeight {
  std::vector<int64_t> stride;  // step between output positions (s_h, s_w), each > 0
  std::vector<int64_t> pads;  // zero padding (top, left, bottom, right), each >= 0
  std::vector<int64_t> dilation;  // spacing of the kernel taps (d_h, d_w), each > 0
  int64_t groups = 1;  // channel groups g > 0, dividing the input and output channels
  std::vector<int64_t> kernel_size;  // (k_h, k_w) of the convolution's weight
  explicit Conv2dGradWeight(const KernelArgs& a) {
    if (!a.has("stride")) a.fail("missing attr 'stride'");
    stride = a.attr_ints("stride");
    if (!a.has("pads")) a.fail("missing attr 'pads'");
    pads = a.attr_ints("pads");
    if (!a.has("dilation")) a.fail("missing attr 'dilation'");
    dilation = a.attr_ints("dilation");
    if (a.has("groups")) groups = a.attr_int("groups");
    if (!a.has("kernel_size")) a.fail("missing attr 'kernel_size'");
    kernel_size = a.attr_ints("kernel_size");
  }
};

// conv_transpose2d: The transposed convolution (torch.nn.functional.conv_transpose2d): y[n, g·C_out/g + o, i·s_h + a·d_h - top, j·s_w + b·d_w - left] += x[n, g·C_in/g + c
struct ConvTranspose2d {
  std::vector<int64_t> stride;  // step between output positions (s_h, s_w), each > 0
  std::vector<int64_t> pads;  // zero padding (top, left, bottom, right), each >= 0
  std::vector<int64_t> dilation;  // spacing of the kernel taps (d_h, d_w), each > 0
  int64_t groups = 1;  // channel groups g > 0, dividing the input and output channels
  std::vector<int64_t> output_padding = {0, 0};  // rows/columns added at the bottom/right (h, w), each < stride or < dilation
  explicit ConvTranspose2d(const KernelArgs& a) {
    if (!a.has("stride")) a.fail("missing attr 'stride'");
    stride = a.attr_ints("stride");
    if (!a.has("pads")) a.fail("missing attr 'pads'");
    pads = a.attr_ints("pads");
    if (!a.has("dilation")) a.fail("missing attr 'dilation'");
    dilation = a.attr_ints("dilation");
    if (a.has("groups")) groups = a.attr_int("groups");
    if (a.has("output_padding")) output_padding = a.attr_ints("output_padding");
  }
};

// cos: Elementwise: y = cos x (radians; NaN at ±inf). Dtypes: float32, float64.
struct Cos {
  explicit Cos(const KernelArgs&) {}
};

// cosh: Elementwise: y = cosh x (inf on overflow). Dtypes: float32, float64.
struct Cosh {
  explicit Cosh(const KernelArgs&) {}
};

// cumsum: y_k = x_0 + ... + x_k along 'axis' (exclusive: x_0 + ... + x_{k-1}, y_0 = 0; reverse: the sums run from the end). Summed sequentially along the axis; 
struct Cumsum {
  int64_t axis = 0;  // the axis summed along
  bool exclusive = false;  // leave the item itself out of its sum
  bool reverse = false;  // sum from the end of the axis
  explicit Cumsum(const KernelArgs& a) {
    if (!a.has("axis")) a.fail("missing attr 'axis'");
    axis = a.attr_int("axis");
    if (a.has("exclusive")) exclusive = a.attr_bool("exclusive", false);
    if (a.has("reverse")) reverse = a.attr_bool("reverse", false);
  }
};

// div: Elementwise with numpy broadcasting: y = a / b (IEEE: x/0 = ±inf, 0/0 = NaN). Both inputs have one dtype (float32, float64).
struct Div {
  explicit Div(const KernelArgs&) {}
};

// dropout: Dropout, inference form: y = x. In a training plan select_mode makes it dropout_train(x, rng/step) (each element zeroed with probability p, the rest s
struct Dropout {
  double p = 0.5;  // drop probability, in [0, 1)
  bool has_seed = false;  // false: the attr is None
  int64_t seed;  // Philox key; absent: crc32 of the node name (dropout_seed)
  explicit Dropout(const KernelArgs& a) {
    if (a.has("p")) p = a.attr_float("p");
    has_seed = a.has("seed");
    if (a.has("seed")) seed = a.attr_int("seed");
  }
};

// dropout_train: Dropout, training form: y[i] = x[i] · m[i], m[i] = 1/(1 - p) if (w_i >> 8) · 2⁻²⁴ >= p else 0, where w_i is word i % 4 of Philox4x32-10(counter = (i /
struct DropoutTrain {
  double p = 0.5;  // drop probability, in [0, 1)
  int64_t seed = 0;  // Philox key (64 bits: key words low, high)
  explicit DropoutTrain(const KernelArgs& a) {
    if (a.has("p")) p = a.attr_float("p");
    if (!a.has("seed")) a.fail("missing attr 'seed'");
    seed = a.attr_int("seed");
  }
};

// einsum: Einstein summation (numpy.einsum, ONNX Einsum) of one or more float operands: y[out] = Σ over the indices not in the output of Π x_k[term_k]; implicit
struct Einsum {
  std::string equation;  // the einsum equation, e.g. 'bij,bjk->bik'
  explicit Einsum(const KernelArgs& a) {
    if (!a.has("equation")) a.fail("missing attr 'equation'");
    equation = a.attr_string("equation", std::string());
  }
};

// embedding: y[i..., :] = weight[ids[i...], :] (torch.nn.functional.embedding / index_select along axis 0): ids int32/int64 of any shape, weight (V, ...) of any dt
struct Embedding {
  explicit Embedding(const KernelArgs&) {}
};

// embedding_grad: The adjoint of embedding w.r.t. the weight: zeros of weight's shape, then row g[i...] added to row ids[i...], in index order (C order of ids) — determ
struct EmbeddingGrad {
  explicit EmbeddingGrad(const KernelArgs&) {}
};

// equal: Elementwise with numpy broadcasting: y = (a == b), bool. Both inputs have one dtype (float32, float64, int32, int64, bool).
struct Equal {
  explicit Equal(const KernelArgs&) {}
};

// erf: Elementwise: y = erf x = 2/√π ∫₀ˣ e^(-t²) dt (erf(±inf) = ±1). Dtypes: float32, float64.
struct Erf {
  explicit Erf(const KernelArgs&) {}
};

// exp: Elementwise: y = e^x. Dtypes: float32, float64.
struct Exp {
  explicit Exp(const KernelArgs&) {}
};

// expand_dims: Insert size-1 dims at 'axes' (positions in the output). A view.
struct ExpandDims {
  std::vector<int64_t> axes;  // positions of the new size-1 dims in the output
  explicit ExpandDims(const KernelArgs& a) {
    if (!a.has("axes")) a.fail("missing attr 'axes'");
    axes = a.attr_ints("axes");
  }
};

// floor: Elementwise: y = ⌊x⌋, the largest integer <= x (NaN, ±inf, ±0 unchanged). Dtypes: float32, float64.
struct Floor {
  explicit Floor(const KernelArgs&) {}
};

// fused_elementwise: A chain of fusible elementwise ops as one step (made by the fusion pass): the `program` attr lists the members (module docstring of graphc/ops/fused.p
struct FusedElementwise {
  std::string program;  // the member ops (see graphc/ops/fused.py)
  explicit FusedElementwise(const KernelArgs& a) {
    if (!a.has("program")) a.fail("missing attr 'program'");
    program = a.attr_string("program", std::string());
  }
};

// fused_matmul: matmul with an elementwise epilogue (made by the fusion pass): p = op(a) @ op(b) exactly as `matmul`, then the `program` attr (graphc/ops/fused.py) ma
struct FusedMatmul {
  bool transpose_a = false;  // use a's last two axes swapped
  bool transpose_b = false;  // use b's last two axes swapped
  std::string program;  // the epilogue (see graphc/ops/fused.py)
  explicit FusedMatmul(const KernelArgs& a) {
    if (a.has("transpose_a")) transpose_a = a.attr_bool("transpose_a", false);
    if (a.has("transpose_b")) transpose_b = a.attr_bool("transpose_b", false);
    if (!a.has("program")) a.fail("missing attr 'program'");
    program = a.attr_string("program", std::string());
  }
};

// fused_reduce: A reduction with an elementwise prologue (made by the fusion pass): the `program` attr (graphc/ops/fused.py) computes a value of the inputs' broadcast
struct FusedReduce {
  std::string program;  // the prologue (see graphc/ops/fused.py)
  std::string reduce;  // sum, mean or max
  bool has_axes = false;  // false: the attr is None
  std::vector<int64_t> axes;  // reduced axes; None: all
  bool keepdims = false;  // keep reduced axes as size 1
  explicit FusedReduce(const KernelArgs& a) {
    if (!a.has("program")) a.fail("missing attr 'program'");
    program = a.attr_string("program", std::string());
    if (!a.has("reduce")) a.fail("missing attr 'reduce'");
    reduce = a.attr_string("reduce", std::string());
    has_axes = a.has("axes");
    if (a.has("axes")) axes = a.attr_ints("axes");
    if (a.has("keepdims")) keepdims = a.attr_bool("keepdims", false);
  }
};

// gelu: GELU (torch.nn.functional.gelu): y = x·Φ(x), Φ(x) = ½·erfc(-x/√2) ('none'), or ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) ('tanh'). gelu(-inf) = -0 (the
struct Gelu {
  std::string approximate = "none";  // 'none': x·Φ(x) with erf (exact); 'tanh': torch's tanh form
  explicit Gelu(const KernelArgs& a) {
    if (a.has("approximate")) approximate = a.attr_string("approximate", std::string());
  }
};

// gelu_grad: dx = dy · gelu'(x) for gelu's 'approximate' form: Φ(x) + x·φ(x) ('none'); the derivative of the tanh form ('tanh'). The limits at ±inf (0 and 1), wher
struct GeluGrad {
  std::string approximate = "none";  // as in gelu
  explicit GeluGrad(const KernelArgs& a) {
    if (a.has("approximate")) approximate = a.attr_string("approximate", std::string());
  }
};

// greater: Elementwise with numpy broadcasting: y = (a > b), bool. Both inputs have one dtype (float32, float64, int32, int64).
struct Greater {
  explicit Greater(const KernelArgs&) {}
};

// greater_equal: Elementwise with numpy broadcasting: y = (a >= b), bool (False where either is NaN). Both inputs have one dtype (float32, float64, int32, int64).
struct GreaterEqual {
  explicit GreaterEqual(const KernelArgs&) {}
};

// gru_cell: One GRU step's gate arithmetic (PyTorch's gate order r, z, n): from xw = x·W_ihᵀ + b_ih and hw = h·W_hhᵀ + b_hh (N, 3H) and h (N, H): r = σ(xw[r] + hw
struct GruCell {
  explicit GruCell(const KernelArgs&) {}
};

// gru_cell_grad: The gradient of gru_cell (dy the gradient of h'), the activations recomputed from xw and hw: dan = dy·(1-z)·(1-n²), dar = dan·hw[n]·r(1-r), daz = dy·(
struct GruCellGrad {
  explicit GruCellGrad(const KernelArgs&) {}
};

// identity: y = x (ONNX Identity), any dtype. A view: the output aliases the input's bytes.
struct Identity {
  explicit Identity(const KernelArgs&) {}
};

// instance_norm: Instance norm (ONNX InstanceNormalization): per sample n and channel c, mean and biased variance over the spatial axes 2.. of x (N, C, D1, ...); y = (
struct InstanceNorm {
  double eps = 1e-05;  // added to the variance before the square root
  explicit InstanceNorm(const KernelArgs& a) {
    if (a.has("eps")) eps = a.attr_float("eps");
  }
};

// int_div: Elementwise with numpy broadcasting: y = a / b truncated toward zero (C, ONNX Div on integers): 7/-2 = -3. x/0 = 0 and INT_MIN/-1 = INT_MIN (two's com
struct IntDiv {
  explicit IntDiv(const KernelArgs&) {}
};

// isinf: Elementwise: y = (x is +inf and detect_positive) or (x is -inf and detect_negative), bool (ONNX IsInf). Dtypes: float32, float64.
struct Isinf {
  bool detect_positive = true;  // true: +inf counts
  bool detect_negative = true;  // true: -inf counts
  explicit Isinf(const KernelArgs& a) {
    if (a.has("detect_positive")) detect_positive = a.attr_bool("detect_positive", false);
    if (a.has("detect_negative")) detect_negative = a.attr_bool("detect_negative", false);
  }
};

// isnan: Elementwise: y = (x is NaN), bool (ONNX IsNaN). Dtypes: float32, float64.
struct Isnan {
  explicit Isnan(const KernelArgs&) {}
};

// layer_norm: Layer norm over x.shape[axis:] (one row): mean = Σx/n, var = Σ(x - mean)²/n, rstd = 1/√(var + eps), y = (x - mean)·rstd·weight + bias. Outputs (y, mea
struct LayerNorm {
  int64_t axis = -1;  // the first normalised axis: x.shape[axis:] is normalised as one row
  double eps = 1e-05;  // added to the variance before the square root
  explicit LayerNorm(const KernelArgs& a) {
    if (a.has("axis")) axis = a.attr_int("axis");
    if (a.has("eps")) eps = a.attr_float("eps");
  }
};

// layer_norm_grad: The gradient of layer_norm (dy, dmean, drstd the gradients of its outputs): with x̂ = (x - mean)·rstd, g = dy·weight, n the row length: dbias = Σ_rows
struct LayerNormGrad {
  int64_t axis = -1;  // the first normalised axis: x.shape[axis:] is normalised as one row
  double eps = 1e-05;  // added to the variance before the square root
  explicit LayerNormGrad(const KernelArgs& a) {
    if (a.has("axis")) axis = a.attr_int("axis");
    if (a.has("eps")) eps = a.attr_float("eps");
  }
};

// leaky_relu: Leaky ReLU (torch.nn.functional.leaky_relu): y = x where x > 0, else x · negative_slope.
struct LeakyRelu {
  double negative_slope = 0.01;  // y = x · negative_slope where x <= 0 (finite)
  explicit LeakyRelu(const KernelArgs& a) {
    if (a.has("negative_slope")) negative_slope = a.attr_float("negative_slope");
  }
};

// leaky_relu_grad: dx = dy where x > 0, else dy · negative_slope (x may be leaky_relu's output when negative_slope >= 0: it has x's sign).
struct LeakyReluGrad {
  double negative_slope = 0.01;  // as in leaky_relu
  explicit LeakyReluGrad(const KernelArgs& a) {
    if (a.has("negative_slope")) negative_slope = a.attr_float("negative_slope");
  }
};

// less: Elementwise with numpy broadcasting: y = (a < b), bool. Both inputs have one dtype (float32, float64, int32, int64).
struct Less {
  explicit Less(const KernelArgs&) {}
};

// less_equal: Elementwise with numpy broadcasting: y = (a <= b), bool (False where either is NaN). Both inputs have one dtype (float32, float64, int32, int64).
struct LessEqual {
  explicit LessEqual(const KernelArgs&) {}
};

// log: Elementwise: y = ln x (natural logarithm; -inf at 0, NaN below). Dtypes: float32, float64.
struct Log {
  explicit Log(const KernelArgs&) {}
};

// log_softmax: y_i = x_i - m - log Σ_j e^{x_j - m} along 'axis', m = max_j x_j.
struct LogSoftmax {
  int64_t axis = -1;  // the axis normalised over
  explicit LogSoftmax(const KernelArgs& a) {
    if (a.has("axis")) axis = a.attr_int("axis");
  }
};

// logical_and: Elementwise with numpy broadcasting: y = a and b. Both inputs have one dtype (bool).
struct LogicalAnd {
  explicit LogicalAnd(const KernelArgs&) {}
};

// logical_not: Elementwise: y = not x (bool). Dtypes: bool.
struct LogicalNot {
  explicit LogicalNot(const KernelArgs&) {}
};

// logical_or: Elementwise with numpy broadcasting: y = a or b. Both inputs have one dtype (bool).
struct LogicalOr {
  explicit LogicalOr(const KernelArgs&) {}
};

// logical_xor: Elementwise with numpy broadcasting: y = a xor b (a != b). Both inputs have one dtype (bool).
struct LogicalXor {
  explicit LogicalXor(const KernelArgs&) {}
};

// lstm_cell: One LSTM step's gate arithmetic (PyTorch's gate order i, f, g, o): from gates (N, 4H) = x·W_ihᵀ + h·W_hhᵀ + biases and c_prev (N, H): i, f, o = σ(gate
struct LstmCell {
  explicit LstmCell(const KernelArgs&) {}
};

// lstm_cell_grad: The gradient of lstm_cell (dh, dc the gradients of its outputs h and c; c its output): with the activations recomputed from gates and dĉ = dc + dh·o·(
struct LstmCellGrad {
  explicit LstmCellGrad(const KernelArgs&) {}
};

// matmul: Matrix product: y[..., i, j] = Σ_k a'[..., i, k] b'[..., k, j] with a' = a or its last two axes swapped (transpose_a), likewise b' (transpose_b), as B
struct Matmul {
  bool transpose_a = false;  // use a's last two axes swapped
  bool transpose_b = false;  // use b's last two axes swapped
  explicit Matmul(const KernelArgs& a) {
    if (a.has("transpose_a")) transpose_a = a.attr_bool("transpose_a", false);
    if (a.has("transpose_b")) transpose_b = a.attr_bool("transpose_b", false);
  }
};

// max: y = max x over 'axes'; reducing an axis of size 0 is an error. The gradient goes to every position equal to the max, split evenly among ties. keepdims
struct Max {
  bool has_axes = false;  // false: the attr is None
  std::vector<int64_t> axes;  // axes reduced; None: every axis
  bool keepdims = false;  // keep reduced axes as size 1
  explicit Max(const KernelArgs& a) {
    has_axes = a.has("axes");
    if (a.has("axes")) axes = a.attr_ints("axes");
    if (a.has("keepdims")) keepdims = a.attr_bool("keepdims", false);
  }
};

// max_pool2d: y[n,c,i,j] = max of x[n,c] over window (i, j) (NCHW; padding counts as -inf); a NaN in the window is the max (PyTorch).
struct MaxPool2d {
  std::vector<int64_t> kernel_size;  // window (k_h, k_w), each > 0
  std::vector<int64_t> stride;  // step between windows (s_h, s_w), each > 0
  std::vector<int64_t> padding;  // implicit padding (p_h, p_w) on both sides, 0 <= p <= k // 2
  explicit MaxPool2d(const KernelArgs& a) {
    if (!a.has("kernel_size")) a.fail("missing attr 'kernel_size'");
    kernel_size = a.attr_ints("kernel_size");
    if (!a.has("stride")) a.fail("missing attr 'stride'");
    stride = a.attr_ints("stride");
    if (!a.has("padding")) a.fail("missing attr 'padding'");
    padding = a.attr_ints("padding");
  }
};

// max_pool2d_gather: y[n,c,i,j] = g[n,c] at window (i, j)'s max position in x (the adjoint of max_pool2d_grad in dy); g has x's shape.
struct MaxPool2dGather {
  std::vector<int64_t> kernel_size;  // window (k_h, k_w), each > 0
  std::vector<int64_t> stride;  // step between windows (s_h, s_w), each > 0
  std::vector<int64_t> padding;  // implicit padding (p_h, p_w) on both sides, 0 <= p <= k // 2
  explicit MaxPool2dGather(const KernelArgs& a) {
    if (!a.has("kernel_size")) a.fail("missing attr 'kernel_size'");
    kernel_size = a.attr_ints("kernel_size");
    if (!a.has("stride")) a.fail("missing attr 'stride'");
    stride = a.attr_ints("stride");
    if (!a.has("padding")) a.fail("missing attr 'padding'");
    padding = a.attr_ints("padding");
  }
};

// max_pool2d_grad: The gradient of max_pool2d: zeros of x's shape, dy[n,c,i,j] added at window (i, j)'s max position in x (the last NaN, else the first maximum).
struct MaxPool2dGrad {
  std::vector<int64_t> kernel_size;  // window (k_h, k_w), each > 0
  std::vector<int64_t> stride;  // step between windows (s_h, s_w), each > 0
  std::vector<int64_t> padding;  // implicit padding (p_h, p_w) on both sides, 0 <= p <= k // 2
  explicit MaxPool2dGrad(const KernelArgs& a) {
    if (!a.has("kernel_size")) a.fail("missing attr 'kernel_size'");
    kernel_size = a.attr_ints("kernel_size");
    if (!a.has("stride")) a.fail("missing attr 'stride'");
    stride = a.attr_ints("stride");
    if (!a.has("padding")) a.fail("missing attr 'padding'");
    padding = a.attr_ints("padding");
  }
};

// maximum: Elementwise with numpy broadcasting: y = max(a, b) (NaN propagates). Both inputs have one dtype (float32, float64, int32, int64).
struct Maximum {
  explicit Maximum(const KernelArgs&) {}
};

// mean: y = (Σ x) / n over 'axes'; the mean of nothing is NaN, as in numpy. keepdims keeps reduced axes as size 1.
struct Mean {
  bool has_axes = false;  // false: the attr is None
  std::vector<int64_t> axes;  // axes reduced; None: every axis
  bool keepdims = false;  // keep reduced axes as size 1
  explicit Mean(const KernelArgs& a) {
    has_axes = a.has("axes");
    if (a.has("axes")) axes = a.attr_ints("axes");
    if (a.has("keepdims")) keepdims = a.attr_bool("keepdims", false);
  }
};

// min: y = min x over 'axes' (all axes when None); NaN propagates (numpy.min); reducing an axis of size 0 is an error. The gradient goes to every position eq
struct Min {
  bool has_axes = false;  // false: the attr is None
  std::vector<int64_t> axes;  // axes reduced; None: every axis
  bool keepdims = false;  // keep reduced axes as size 1
  explicit Min(const KernelArgs& a) {
    has_axes = a.has("axes");
    if (a.has("axes")) axes = a.attr_ints("axes");
    if (a.has("keepdims")) keepdims = a.attr_bool("keepdims", false);
  }
};

// minimum: Elementwise with numpy broadcasting: y = min(a, b) (NaN propagates). Both inputs have one dtype (float32, float64, int32, int64).
struct Minimum {
  explicit Minimum(const KernelArgs&) {}
};

// mod: Elementwise with numpy broadcasting: the remainder of a / b. fmod=False: the sign of the divisor, a - b·⌊a/b⌋ (numpy.mod, Python %, ONNX Mod fmod=0); 
struct Mod {
  bool fmod = false;  // false: the result has the divisor's sign; true: the dividend's (C fmod)
  explicit Mod(const KernelArgs& a) {
    if (a.has("fmod")) fmod = a.attr_bool("fmod", false);
  }
};

// mul: Elementwise with numpy broadcasting: y = a · b. Both inputs have one dtype (float32, float64, int32, int64).
struct Mul {
  explicit Mul(const KernelArgs&) {}
};

// neg: Elementwise: y = -x. Dtypes: float32, float64, int32, int64.
struct Neg {
  explicit Neg(const KernelArgs&) {}
};

// one_hot: y[..., k] = 1 if indices[...] == k else 0, for k < 'depth'; an index outside [0, depth) gives a row of zeros (TensorFlow's rule). Output dtype 'dtype'
struct OneHot {
  int64_t depth = 0;  // the number of classes
  DType dtype = DType::F32;  // the output dtype
  explicit OneHot(const KernelArgs& a) {
    if (!a.has("depth")) a.fail("missing attr 'depth'");
    depth = a.attr_int("depth");
    if (a.has("dtype")) dtype = a.attr_dtype("dtype", DType::Invalid);
  }
};

// pad: y = x with pads[2i] items before and pads[2i+1] after along axis i (numpy.pad per-axis pairs, flattened); 'mode' constant (border = 'value'), reflect 
struct Pad {
  std::vector<int64_t> pads;  // [before_0, after_0, before_1, after_1, ...], one pair per axis, >= 0
  std::string mode = "constant";  // 'constant', 'reflect' or 'replicate'
  double value = 0.0;  // the border value of mode 'constant' (cast to x's dtype)
  explicit Pad(const KernelArgs& a) {
    if (!a.has("pads")) a.fail("missing attr 'pads'");
    pads = a.attr_ints("pads");
    if (a.has("mode")) mode = a.attr_string("mode", std::string());
    if (a.has("value")) value = a.attr_float("value");
  }
};

// pad_grad: The adjoint of pad: each item of g (pad's output shape) added to the item of x it was read from; the constant border is dropped. Only the shape of x i
struct PadGrad {
  std::vector<int64_t> pads;  // as in pad
  std::string mode = "constant";  // as in pad
  explicit PadGrad(const KernelArgs& a) {
    if (!a.has("pads")) a.fail("missing attr 'pads'");
    pads = a.attr_ints("pads");
    if (a.has("mode")) mode = a.attr_string("mode", std::string());
  }
};

// pow: Elementwise power with a scalar exponent: y = x^p (p = attr 'exponent'). Float dtypes. A negative base with a non-integer p gives NaN, as in numpy.
struct Pow {
  double exponent;  // the scalar exponent p
  explicit Pow(const KernelArgs& a) {
    if (!a.has("exponent")) a.fail("missing attr 'exponent'");
    exponent = a.attr_float("exponent");
  }
};

// power: Elementwise with numpy broadcasting: y = a^b (C pow, ONNX Pow on floats: a^±0 = 1 and 1^b = 1 even for NaN, a negative base with a non-integer exponen
struct Power {
  explicit Power(const KernelArgs&) {}
};

// random_normal: Normal random numbers: y = mean + stddev · z (in float64, rounded once to dtype), z by Box–Muller from pairs of uniforms (u₁ in (0, 1], u₂ in [0, 1)):
struct RandomNormal {
  double mean = 0.0;  // the mean
  double stddev = 1.0;  // the standard deviation, >= 0
  int64_t seed = 0;  // Philox key (64 bits: key words low, high), in [0, 2**63)
  std::vector<int64_t> shape;  // the output shape
  DType dtype = DType::F32;  // float32 or float64
  explicit RandomNormal(const KernelArgs& a) {
    if (a.has("mean")) mean = a.attr_float("mean");
    if (a.has("stddev")) stddev = a.attr_float("stddev");
    if (!a.has("seed")) a.fail("missing attr 'seed'");
    seed = a.attr_int("seed");
    if (!a.has("shape")) a.fail("missing attr 'shape'");
    shape = a.attr_ints("shape");
    if (a.has("dtype")) dtype = a.attr_dtype("dtype", DType::Invalid);
  }
};

// random_normal_like: random_normal with the shape of x: x is a data-less input (its dims, maybe bound at compile time, are read, never its values; it stays a placeholder o
struct RandomNormalLike {
  double mean = 0.0;  // the mean
  double stddev = 1.0;  // the standard deviation, >= 0
  int64_t seed = 0;  // Philox key (64 bits: key words low, high), in [0, 2**63)
  bool has_dtype = false;  // false: the attr is None
  DType dtype = DType::Invalid;  // float32 or float64; None: x's dtype when it is a float, else float32
  explicit RandomNormalLike(const KernelArgs& a) {
    if (a.has("mean")) mean = a.attr_float("mean");
    if (a.has("stddev")) stddev = a.attr_float("stddev");
    if (!a.has("seed")) a.fail("missing attr 'seed'");
    seed = a.attr_int("seed");
    has_dtype = a.has("dtype");
    if (a.has("dtype")) dtype = a.attr_dtype("dtype", DType::Invalid);
  }
};

// random_uniform: Uniform random numbers: y = minval + (maxval - minval) · u, u in [0, 1) (in float64, rounded once to dtype); element i: float32 word i % 4 of block i 
struct RandomUniform {
  double minval = 0.0;  // lower bound (included)
  double maxval = 1.0;  // upper bound (excluded but for rounding)
  int64_t seed = 0;  // Philox key (64 bits: key words low, high), in [0, 2**63)
  std::vector<int64_t> shape;  // the output shape
  DType dtype = DType::F32;  // float32 or float64
  explicit RandomUniform(const KernelArgs& a) {
    if (a.has("minval")) minval = a.attr_float("minval");
    if (a.has("maxval")) maxval = a.attr_float("maxval");
    if (!a.has("seed")) a.fail("missing attr 'seed'");
    seed = a.attr_int("seed");
    if (!a.has("shape")) a.fail("missing attr 'shape'");
    shape = a.attr_ints("shape");
    if (a.has("dtype")) dtype = a.attr_dtype("dtype", DType::Invalid);
  }
};

// random_uniform_like: random_uniform with the shape of x: x is a data-less input (its dims, maybe bound at compile time, are read, never its values; it stays a placeholder 
struct RandomUniformLike {
  double minval = 0.0;  // lower bound (included)
  double maxval = 1.0;  // upper bound (excluded but for rounding)
  int64_t seed = 0;  // Philox key (64 bits: key words low, high), in [0, 2**63)
  bool has_dtype = false;  // false: the attr is None
  DType dtype = DType::Invalid;  // float32 or float64; None: x's dtype when it is a float, else float32
  explicit RandomUniformLike(const KernelArgs& a) {
    if (a.has("minval")) minval = a.attr_float("minval");
    if (a.has("maxval")) maxval = a.attr_float("maxval");
    if (!a.has("seed")) a.fail("missing attr 'seed'");
    seed = a.attr_int("seed");
    has_dtype = a.has("dtype");
    if (a.has("dtype")) dtype = a.attr_dtype("dtype", DType::Invalid);
  }
};

// reciprocal: Elementwise: y = 1 / x (IEEE: 1/±0 = ±inf). Dtypes: float32, float64.
struct Reciprocal {
  explicit Reciprocal(const KernelArgs&) {}
};

// relu: Elementwise: y = max(x, 0). Dtypes: float32, float64, int32, int64.
struct Relu {
  explicit Relu(const KernelArgs&) {}
};

// relu_grad: dx = g where x > 0 else 0: the gradient of relu, in one pass.
struct ReluGrad {
  explicit ReluGrad(const KernelArgs&) {}
};

// reshape: Same elements in C order, new 'shape' (one dim may be -1: inferred). A view.
struct Reshape {
  std::vector<int64_t> shape;  // the output shape; one dim may be -1
  explicit Reshape(const KernelArgs& a) {
    if (!a.has("shape")) a.fail("missing attr 'shape'");
    shape = a.attr_ints("shape");
  }
};

// reshape_like: y = x reshaped to the shape of 'like' (same element count). A view.
struct ReshapeLike {
  explicit ReshapeLike(const KernelArgs&) {}
};

// resize: ONNX Resize, modes nearest and linear: along each axis i whose size or scale changes, output index j maps to the input coordinate x(j) of 'coordinate_
struct Resize {
  std::vector<int64_t> sizes;  // the output shape, one entry per axis; -1 keeps the input's size (scale 1)
  bool has_scales = false;  // false: the attr is None
  std::vector<double> scales;  // per-axis scale the coordinate transform divides by (ONNX's scales input); None: sizes[i] / x.shape[i]
  std::string mode = "nearest";  // nearest or linear (n-linear over the resized axes)
  std::string coordinate_transformation_mode = "half_pixel";  // how an output index maps to an input coordinate: half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nn
  std::string nearest_mode = "round_prefer_floor";  // rounding of the coordinate in nearest mode: round_prefer_floor, round_prefer_ceil, floor, ceil
  bool exclude_outside = false;  // give taps outside the input weight 0 and renormalise the rest
  explicit Resize(const KernelArgs& a) {
    if (!a.has("sizes")) a.fail("missing attr 'sizes'");
    sizes = a.attr_ints("sizes");
    has_scales = a.has("scales");
    if (a.has("scales")) scales = a.attr_floats("scales");
    if (a.has("mode")) mode = a.attr_string("mode", std::string());
    if (a.has("coordinate_transformation_mode")) coordinate_transformation_mode = a.attr_string("coordinate_transformation_mode", std::string());
    if (a.has("nearest_mode")) nearest_mode = a.attr_string("nearest_mode", std::string());
    if (a.has("exclude_outside")) exclude_outside = a.attr_bool("exclude_outside", false);
  }
};

// resize_grad: The gradient of resize with respect to x: dx = Rᵀ dy for the linear map R that resize applies (each output's taps scatter weight · dy back to the inpu
struct ResizeGrad {
  std::vector<int64_t> sizes;  // the output shape, one entry per axis; -1 keeps the input's size (scale 1)
  bool has_scales = false;  // false: the attr is None
  std::vector<double> scales;  // per-axis scale the coordinate transform divides by (ONNX's scales input); None: sizes[i] / x.shape[i]
  std::string mode = "nearest";  // nearest or linear (n-linear over the resized axes)
  std::string coordinate_transformation_mode = "half_pixel";  // how an output index maps to an input coordinate: half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nn
  std::string nearest_mode = "round_prefer_floor";  // rounding of the coordinate in nearest mode: round_prefer_floor, round_prefer_ceil, floor, ceil
  bool exclude_outside = false;  // give taps outside the input weight 0 and renormalise the rest
  explicit ResizeGrad(const KernelArgs& a) {
    if (!a.has("sizes")) a.fail("missing attr 'sizes'");
    sizes = a.attr_ints("sizes");
    has_scales = a.has("scales");
    if (a.has("scales")) scales = a.attr_floats("scales");
    if (a.has("mode")) mode = a.attr_string("mode", std::string());
    if (a.has("coordinate_transformation_mode")) coordinate_transformation_mode = a.attr_string("coordinate_transformation_mode", std::string());
    if (a.has("nearest_mode")) nearest_mode = a.attr_string("nearest_mode", std::string());
    if (a.has("exclude_outside")) exclude_outside = a.attr_bool("exclude_outside", false);
  }
};

// round: Elementwise: y = x rounded to the nearest integer, halves to even (ONNX Round, numpy.round): round(2.5) = 2, round(-0.5) = -0. Dtypes: float32, float6
struct Round {
  explicit Round(const KernelArgs&) {}
};

// scaled_dot_product_attention: Attention (torch's scaled_dot_product_attention, dropout 0): keep = mask (broadcast to (..., L, S)) and j <= i if causal; s = scale·q kᵀ; out[i] = Σ_{
struct ScaledDotProductAttention {
  double scale;  // the factor of q kᵀ (the builder's default: 1/√E)
  bool causal = false;  // keep key j for query i only when j <= i (top-left aligned)
  explicit ScaledDotProductAttention(const KernelArgs& a) {
    if (!a.has("scale")) a.fail("missing attr 'scale'");
    scale = a.attr_float("scale");
    if (a.has("causal")) causal = a.attr_bool("causal", false);
  }
};

// scaled_dot_product_attention_grad: The gradient of scaled_dot_product_attention (dout, dlse the gradients of out and lse): with P = exp(s - lse) on the kept keys (0 elsewhere), dP = dou
struct ScaledDotProductAttentionGrad {
  double scale;  // the factor of q kᵀ (the builder's default: 1/√E)
  bool causal = false;  // keep key j for query i only when j <= i (top-left aligned)
  explicit ScaledDotProductAttentionGrad(const KernelArgs& a) {
    if (!a.has("scale")) a.fail("missing attr 'scale'");
    scale = a.attr_float("scale");
    if (a.has("causal")) causal = a.attr_bool("causal", false);
  }
};

// sgd_momentum_update: SGD with momentum (PyTorch's rule, dampening 0): g' = g + wd·w; v ← μ·v + g'; w ← w - lr·(g' + μ·v) with nesterov, else w ← w - lr·v; g ← grad_scale ·
struct SgdMomentumUpdate {
  double lr;  // learning rate
  double momentum;  // momentum factor
  bool nesterov = false;  // Nesterov momentum
  double weight_decay = 0.0;  // L2 penalty added to the gradient
  double grad_scale = 1.0;  // g ← grad_scale · g first (one multiply, in the variable's dtype): data-parallel training folds the 1/N of the gradient average in here
  explicit SgdMomentumUpdate(const KernelArgs& a) {
    if (!a.has("lr")) a.fail("missing attr 'lr'");
    lr = a.attr_float("lr");
    if (!a.has("momentum")) a.fail("missing attr 'momentum'");
    momentum = a.attr_float("momentum");
    if (a.has("nesterov")) nesterov = a.attr_bool("nesterov", false);
    if (a.has("weight_decay")) weight_decay = a.attr_float("weight_decay");
    if (a.has("grad_scale")) grad_scale = a.attr_float("grad_scale");
  }
};

// sgd_update: Plain SGD: w ← w - lr · (g + weight_decay · w); g ← grad_scale · g first (one multiply, in the variable's dtype): data-parallel training folds the 1/N
struct SgdUpdate {
  double lr;  // learning rate
  double weight_decay = 0.0;  // L2 penalty added to the gradient
  double grad_scale = 1.0;  // g ← grad_scale · g first (one multiply, in the variable's dtype): data-parallel training folds the 1/N of the gradient average in here
  explicit SgdUpdate(const KernelArgs& a) {
    if (!a.has("lr")) a.fail("missing attr 'lr'");
    lr = a.attr_float("lr");
    if (a.has("weight_decay")) weight_decay = a.attr_float("weight_decay");
    if (a.has("grad_scale")) grad_scale = a.attr_float("grad_scale");
  }
};

// sigmoid: Elementwise: y = 1 / (1 + e^-x), computed without overflow. Dtypes: float32, float64.
struct Sigmoid {
  explicit Sigmoid(const KernelArgs&) {}
};

// sign: Elementwise sign: -1 for x < 0, 1 for x > 0, 0 for ±0 (+0.0 for floats), NaN for NaN (numpy.sign, ONNX Sign). Dtypes: float32, float64, int32, int64.
struct Sign {
  explicit Sign(const KernelArgs&) {}
};

// silu: SiLU (swish): y = x · σ(x), σ(x) = 1 / (1 + e^-x). Composite: mul(x, sigmoid(x)); no kernel of its own yet.
struct Silu {
  explicit Silu(const KernelArgs&) {}
};

// sin: Elementwise: y = sin x (radians; NaN at ±inf). Dtypes: float32, float64.
struct Sin {
  explicit Sin(const KernelArgs&) {}
};

// sinh: Elementwise: y = sinh x (±inf on overflow). Dtypes: float32, float64.
struct Sinh {
  explicit Sinh(const KernelArgs&) {}
};

// slice: y = x[starts:ends:steps] along 'axes' (all axes in order when None; steps default 1), numpy semantics: negative indices count from the end, out-of-ran
struct Slice {
  std::vector<int64_t> starts;  // first index per sliced axis (negative: from the end; clamped)
  std::vector<int64_t> ends;  // one past the last index per sliced axis (clamped)
  bool has_axes = false;  // false: the attr is None
  std::vector<int64_t> axes;  // the sliced axes; None: 0..len(starts)-1
  bool has_steps = false;  // false: the attr is None
  std::vector<int64_t> steps;  // stride per sliced axis (nonzero); None: 1
  explicit Slice(const KernelArgs& a) {
    if (!a.has("starts")) a.fail("missing attr 'starts'");
    starts = a.attr_ints("starts");
    if (!a.has("ends")) a.fail("missing attr 'ends'");
    ends = a.attr_ints("ends");
    has_axes = a.has("axes");
    if (a.has("axes")) axes = a.attr_ints("axes");
    has_steps = a.has("steps");
    if (a.has("steps")) steps = a.attr_ints("steps");
  }
};

// slice_grad: The adjoint of slice: zeros of x's shape with g written at x[starts:ends:steps] along axes. Only the shape of x is read.
struct SliceGrad {
  std::vector<int64_t> starts;  // first index per sliced axis (negative: from the end; clamped)
  std::vector<int64_t> ends;  // one past the last index per sliced axis (clamped)
  bool has_axes = false;  // false: the attr is None
  std::vector<int64_t> axes;  // the sliced axes; None: 0..len(starts)-1
  bool has_steps = false;  // false: the attr is None
  std::vector<int64_t> steps;  // stride per sliced axis (nonzero); None: 1
  explicit SliceGrad(const KernelArgs& a) {
    if (!a.has("starts")) a.fail("missing attr 'starts'");
    starts = a.attr_ints("starts");
    if (!a.has("ends")) a.fail("missing attr 'ends'");
    ends = a.attr_ints("ends");
    has_axes = a.has("axes");
    if (a.has("axes")) axes = a.attr_ints("axes");
    has_steps = a.has("steps");
    if (a.has("steps")) steps = a.attr_ints("steps");
  }
};

// softmax: y_i = e^{x_i - m} / Σ_j e^{x_j - m} along 'axis', m = max_j x_j (stable for large x). A row holding NaN or +inf gives NaN throughout (ONNX).
struct Softmax {
  int64_t axis = -1;  // the axis normalised over
  explicit Softmax(const KernelArgs& a) {
    if (a.has("axis")) axis = a.attr_int("axis");
  }
};

// softmax_cross_entropy: Fused, stable cross-entropy with integer labels: loss_i = log Σ_c e^{z_ic} - z_i,label_i over logits z (..., C) and labels (...); 'reduction' mean (de
struct SoftmaxCrossEntropy {
  std::string reduction = "mean";  // 'mean' (default), 'sum' or 'none'
  explicit SoftmaxCrossEntropy(const KernelArgs& a) {
    if (a.has("reduction")) reduction = a.attr_string("reduction", std::string());
  }
};

// softmax_cross_entropy_grad: d loss / d logits of softmax_cross_entropy: (softmax(z) - one_hot(label)) · g, divided by the number of labels for reduction 'mean', with g broadcast 
struct SoftmaxCrossEntropyGrad {
  std::string reduction = "mean";  // 'mean', 'sum' or 'none', as in the forward op
  explicit SoftmaxCrossEntropyGrad(const KernelArgs& a) {
    if (a.has("reduction")) reduction = a.attr_string("reduction", std::string());
  }
};

// softplus: Softplus (torch.nn.functional.softplus): y = x where beta·x > threshold, else log(1 + e^(beta·x)) / beta, computed as (max(z, 0) + log1p(e^-|z|)) / be
struct Softplus {
  double beta = 1.0;  // the sharpness: y = log(1 + e^(beta·x)) / beta (finite, nonzero)
  double threshold = 20.0;  // y = x where beta·x > threshold (torch's linear region)
  explicit Softplus(const KernelArgs& a) {
    if (a.has("beta")) beta = a.attr_float("beta");
    if (a.has("threshold")) threshold = a.attr_float("threshold");
  }
};

// softplus_grad: dx = dy where beta·x > threshold, else dy·σ(beta·x) (σ computed without overflow; torch: NaN where e^(beta·x) overflows below a large threshold).
struct SoftplusGrad {
  double beta = 1.0;  // as in softplus
  double threshold = 20.0;  // as in softplus
  explicit SoftplusGrad(const KernelArgs& a) {
    if (a.has("beta")) beta = a.attr_float("beta");
    if (a.has("threshold")) threshold = a.attr_float("threshold");
  }
};

// split: Cut x along 'axis' into pieces of 'sizes' (one output per size).
struct Split {
  int64_t axis = 0;  // the axis split
  std::vector<int64_t> sizes;  // the size of each part
  explicit Split(const KernelArgs& a) {
    if (!a.has("axis")) a.fail("missing attr 'axis'");
    axis = a.attr_int("axis");
    if (!a.has("sizes")) a.fail("missing attr 'sizes'");
    sizes = a.attr_ints("sizes");
  }
};

// sqrt: Elementwise: y = √x (NaN below 0). Dtypes: float32, float64.
struct Sqrt {
  explicit Sqrt(const KernelArgs&) {}
};

// squeeze: Remove size-1 dims at 'axes' (all size-1 dims when None). A view.
struct Squeeze {
  bool has_axes = false;  // false: the attr is None
  std::vector<int64_t> axes;  // size-1 dims removed; None: all
  explicit Squeeze(const KernelArgs& a) {
    has_axes = a.has("axes");
    if (a.has("axes")) axes = a.attr_ints("axes");
  }
};

// stop_gradient: y = x in the forward pass; no gradient flows through it. A view.
struct StopGradient {
  explicit StopGradient(const KernelArgs&) {}
};

// sub: Elementwise with numpy broadcasting: y = a - b. Both inputs have one dtype (float32, float64, int32, int64).
struct Sub {
  explicit Sub(const KernelArgs&) {}
};

// sum: y = Σ x over 'axes' (all axes when None); the sum of nothing is 0. keepdims keeps reduced axes as size 1.
struct Sum {
  bool has_axes = false;  // false: the attr is None
  std::vector<int64_t> axes;  // axes reduced; None: every axis
  bool keepdims = false;  // keep reduced axes as size 1
  explicit Sum(const KernelArgs& a) {
    has_axes = a.has("axes");
    if (a.has("axes")) axes = a.attr_ints("axes");
    if (a.has("keepdims")) keepdims = a.attr_bool("keepdims", false);
  }
};

// sum_to: y = x summed over the dims that broadcasting stretched, so y.shape == like.shape (the adjoint of broadcast_like). Only the shape of 'like' is read.
struct SumTo {
  explicit SumTo(const KernelArgs&) {}
};

// take_along_axis: y[..., j, ...] = x[..., indices[..., j, ...], ...] along 'axis' (torch.gather, numpy.take_along_axis): indices int64 of x's rank and x's shape on ever
struct TakeAlongAxis {
  int64_t axis = -1;  // the axis selected along (negative: from the end)
  explicit TakeAlongAxis(const KernelArgs& a) {
    if (a.has("axis")) axis = a.attr_int("axis");
  }
};

// take_along_axis_grad: The adjoint of take_along_axis w.r.t. x: zeros of x's shape, then g[..., j, ...] added at [..., indices[..., j, ...], ...], each line in index order (
struct TakeAlongAxisGrad {
  int64_t axis = -1;  // the axis selected along (negative: from the end)
  explicit TakeAlongAxisGrad(const KernelArgs& a) {
    if (a.has("axis")) axis = a.attr_int("axis");
  }
};

// tan: Elementwise: y = tan x (radians; NaN at ±inf). Dtypes: float32, float64.
struct Tan {
  explicit Tan(const KernelArgs&) {}
};

// tanh: Elementwise: y = tanh x. Dtypes: float32, float64.
struct Tanh {
  explicit Tanh(const KernelArgs&) {}
};

// tile: y = x repeated repeats[i] times along each axis i (numpy.tile with one repeat per axis, ONNX Tile): y[j] = x[j mod x.shape]; y.shape[i] = x.shape[i] ·
struct Tile {
  std::vector<int64_t> repeats;  // how many copies along each axis (one entry per axis, >= 0)
  explicit Tile(const KernelArgs& a) {
    if (!a.has("repeats")) a.fail("missing attr 'repeats'");
    repeats = a.attr_ints("repeats");
  }
};

// topk: (values, indices) = the k largest (largest=False: smallest) items of x along 'axis' and their int64 positions (torch.topk, ONNX TopK). Total order: Na
struct Topk {
  int64_t k = 0;  // how many items to keep, 0 <= k <= x.shape[axis]
  int64_t axis = -1;  // the axis selected along (negative: from the end)
  bool largest = true;  // keep the largest items (False: the smallest)
  bool sorted = true;  // best first (False: in the order of their index)
  explicit Topk(const KernelArgs& a) {
    if (!a.has("k")) a.fail("missing attr 'k'");
    k = a.attr_int("k");
    if (a.has("axis")) axis = a.attr_int("axis");
    if (a.has("largest")) largest = a.attr_bool("largest", false);
    if (a.has("sorted")) sorted = a.attr_bool("sorted", false);
  }
};

// transpose: y = x with axes permuted: y.shape[i] = x.shape[perm[i]] (perm None reverses the axes).
struct Transpose {
  bool has_perm = false;  // false: the attr is None
  std::vector<int64_t> perm;  // output axis i is input axis perm[i]; None reverses the axes
  explicit Transpose(const KernelArgs& a) {
    has_perm = a.has("perm");
    if (a.has("perm")) perm = a.attr_ints("perm");
  }
};

// tril: y = x where j - i <= diagonal, else 0, for item (i, j) of the last two axes (torch.tril).
struct Tril {
  int64_t diagonal = 0;  // 0: the main diagonal; > 0 above it, < 0 below it
  explicit Tril(const KernelArgs& a) {
    if (a.has("diagonal")) diagonal = a.attr_int("diagonal");
  }
};

// triu: y = x where j - i >= diagonal, else 0, for item (i, j) of the last two axes (torch.triu).
struct Triu {
  int64_t diagonal = 0;  // 0: the main diagonal; > 0 above it, < 0 below it
  explicit Triu(const KernelArgs& a) {
    if (a.has("diagonal")) diagonal = a.attr_int("diagonal");
  }
};

// upsample_nearest2d: Nearest upsampling by integer factors: y[n, c, i, j] = x[n, c, i // s_h, j // s_w], y of shape (N, C, H·s_h, W·s_w). Composite: reshape, a broadcast m
struct UpsampleNearest2d {
  std::vector<int64_t> scales;  // integer factors (s_h, s_w), each >= 1
  explicit UpsampleNearest2d(const KernelArgs& a) {
    if (!a.has("scales")) a.fail("missing attr 'scales'");
    scales = a.attr_ints("scales");
  }
};

// where: y = x where cond else y, elementwise with three-way numpy broadcasting. cond is bool; x and y share a dtype. The gradient flows to x where cond, to y 
struct Where {
  explicit Where(const KernelArgs&) {}
};

}  // namespace attrs
}  // namespace graphc
