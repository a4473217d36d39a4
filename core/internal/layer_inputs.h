// Private: what both layer classes do with a ForwardInput before computing,
// and where their results go.
#ifndef ATTENTION_CORE_INTERNAL_LAYER_INPUTS_H_
#define ATTENTION_CORE_INTERNAL_LAYER_INPUTS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/module.h"
#include "core/tensor.h"

namespace attention::internal {

// The three inputs of a Forward call after defaults (absent key: query;
// absent value: key), all [B, L, d_model].
struct LayerInputs {
  const ConstTensorRef* query;
  const ConstTensorRef* key;
  const ConstTensorRef* value;
  int64_t batch, lq, lk;
};

// INVALID_ARGUMENT naming "query", "key" or "value" for a missing query or
// inconsistent shapes; `single_kv` (mla) also refuses a value that differs
// from the key.
absl::StatusOr<LayerInputs> ResolveInputs(const ForwardInput& in, int64_t d_model, bool single_kv);

// Where a result of `shape` goes: the caller's buffer when given (already
// sized), else `owned`, allocated to `shape`.
float* Destination(float* given, Tensor& owned, std::vector<int64_t> shape);

}  // namespace attention::internal

#endif  // ATTENTION_CORE_INTERNAL_LAYER_INPUTS_H_
