// Conversions between attention.v1 messages and core types, shared by the
// server and the C++ client, with the validation the contract promises:
// every error is INVALID_ARGUMENT (or RESOURCE_EXHAUSTED for a limit) with a
// message that names the field, what was expected and what came. Sizes are
// computed overflow-proof and checked against the limits before anything is
// allocated. This is the one mapping between the wire's DType and the
// core's; nothing here computes attention (no oneDNN). Thread-safe.
#ifndef ATTENTION_WIRE_CONVERT_H_
#define ATTENTION_WIRE_CONVERT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "attention/v1/attention.pb.h"
#include "core/config.h"
#include "core/dtype.h"
#include "core/sdpa.h"  // MaskSpec
#include "core/tensor.h"

namespace attention::wire {

namespace pb = ::attention::v1;

// Shape expectation for a float tensor: exact rank and a description used in
// messages ("[B, Hq, Lq, Dk]"); rank < 0 accepts any rank >= 1.
struct TensorSpec {
  int rank = -1;
  const char* dims = "";
};

// Checks that `shape` has at most max_elements elements (0: no limit):
// RESOURCE_EXHAUSTED naming `field` otherwise, INVALID_ARGUMENT if the count
// overflows int64.
absl::Status CheckElementLimit(absl::string_view field, absl::Span<const int64_t> shape,
                               int64_t max_elements);

// Decodes a FLOAT32/FLOAT16/BFLOAT16 tensor into float32.
absl::StatusOr<Tensor> TensorFromProto(const pb::Tensor& t, absl::string_view field,
                                       const TensorSpec& spec, int64_t max_elements);

// An input as the core reads it: FLOAT32 data that is 4-byte aligned is
// referenced where protobuf parsed it (no copy); other dtypes are decoded
// into `*storage`. Validation as TensorFromProto.
absl::StatusOr<ConstTensorRef> RefFromProto(const pb::Tensor& t, absl::string_view field,
                                            const TensorSpec& spec, int64_t max_elements,
                                            Tensor* storage);
// The same for a rank-4 input (spec.rank == 4), as a View4.
absl::StatusOr<View4> ViewFromProto(const pb::Tensor& t, absl::string_view field,
                                    const TensorSpec& spec, int64_t max_elements, Tensor* storage);

// Encodes `t` as `dtype` (FLOAT32, FLOAT16 or BFLOAT16).
void TensorToProto(const Tensor& t, pb::DType dtype, pb::Tensor* out);

// The dtype a response uses: `requested`, or `input` when unspecified.
// INVALID_ARGUMENT naming `field` for BOOL or an unknown value.
absl::StatusOr<pb::DType> ResolveOutputDType(pb::DType requested, pb::DType input,
                                             absl::string_view field);

// Mask -> MaskSpec (keep of any dtype, nonzero = keep). Consistency with the
// attention shapes is checked later by core (ValidateSdpa).
absl::StatusOr<MaskSpec> MaskFromProto(const pb::Mask& m, absl::string_view field,
                                       int64_t max_elements);

absl::StatusOr<ModuleConfig> ConfigFromProto(const pb::ModuleConfig& c);
// A KV-cache dtype (ModuleConfig / DecodeStart.kv_cache_dtype):
// UNSPECIFIED is FLOAT32; BOOL or an unknown value is INVALID_ARGUMENT
// naming `field`.
absl::StatusOr<DType> KvCacheDTypeFromProto(pb::DType d, absl::string_view field);
// A compute dtype (ModuleConfig.compute_dtype, AttendRequest.compute_dtype):
// UNSPECIFIED/FLOAT32 or BFLOAT16; FLOAT16 is FAILED_PRECONDITION (no CPU
// float16 matmul), anything else INVALID_ARGUMENT, naming `field`.
absl::StatusOr<DType> ComputeDTypeFromProto(pb::DType d, absl::string_view field);
void ConfigToProto(const ModuleConfig& c, pb::ModuleConfig* out);

// The core's DType of a wire dtype (DTYPE_UNSPECIFIED and unknown values:
// kFloat32), and back.
DType ToCoreDType(pb::DType d);
pb::DType ToProtoDType(DType d);

// The dtype a user names: "f32"/"float32", "f16"/"float16",
// "bf16"/"bfloat16". INVALID_ARGUMENT naming `field` otherwise.
absl::StatusOr<DType> ParseDType(absl::string_view name, absl::string_view field);

}  // namespace attention::wire

#endif  // ATTENTION_WIRE_CONVERT_H_
