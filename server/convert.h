// Conversions between attention.v1 messages and core types, with the
// validation the contract promises: every error is INVALID_ARGUMENT (or
// RESOURCE_EXHAUSTED for a limit) with a message that names the field, what
// was expected and what came. Sizes are computed overflow-proof and checked
// against the limits before anything is allocated.
#ifndef ATTENTION_SERVER_CONVERT_H_
#define ATTENTION_SERVER_CONVERT_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "attention/v1/attention.pb.h"
#include "core/dtype.h"
#include "core/module.h"
#include "core/sdpa.h"
#include "core/tensor.h"

namespace attention::server {

namespace pb = ::attention::v1;

// Shape expectation for a float tensor: exact rank and a description used in
// messages ("[B, Hq, Lq, Dk]"); rank < 0 accepts any rank >= 1.
struct TensorSpec {
  int rank = -1;
  const char* dims = "";
};

// Checks that `numel` elements fit the limit; RESOURCE_EXHAUSTED otherwise.
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
void ConfigToProto(const ModuleConfig& c, pb::ModuleConfig* out);

DType ToCoreDType(pb::DType d);

}  // namespace attention::server

#endif  // ATTENTION_SERVER_CONVERT_H_
