#include "core/internal/layer_inputs.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace attention::internal {
namespace {

absl::Status CheckInput(const ConstTensorRef& t, const char* field, int64_t d_model) {
  if (t.rank() != 3 || t.dim(0) < 1 || t.dim(1) < 1 || t.dim(2) != d_model) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": expected [B, L, d_model = ", d_model,
                                                   "] with B, L >= 1, got ", ShapeString(t.shape)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LayerInputs> ResolveInputs(const ForwardInput& in, int64_t d_model, bool single_kv) {
  if (!in.query.present) return absl::InvalidArgumentError("query: required");
  LayerInputs r;
  r.query = &in.query;
  r.key = in.key.present ? &in.key : &in.query;
  r.value = in.value.present ? &in.value : r.key;
  ATTN_RETURN_IF_ERROR(CheckInput(*r.query, "query", d_model));
  ATTN_RETURN_IF_ERROR(CheckInput(*r.key, "key", d_model));
  ATTN_RETURN_IF_ERROR(CheckInput(*r.value, "value", d_model));
  r.batch = r.query->dim(0);
  r.lq = r.query->dim(1);
  r.lk = r.key->dim(1);
  if (r.key->dim(0) != r.batch) {
    return absl::InvalidArgumentError(
        absl::StrCat("key: dim 0 (B) expected ", r.batch, " (as query), got ", r.key->dim(0)));
  }
  if (r.value->dim(0) != r.batch || r.value->dim(1) != r.lk) {
    return absl::InvalidArgumentError(absl::StrCat("value: expected [B, Lk] = [", r.batch, ", ",
                                                   r.lk, "] as key, got ",
                                                   ShapeString(r.value->shape)));
  }
  if (single_kv && r.value != r.key && r.value->data != r.key->data &&
      std::memcmp(r.value->data, r.key->data, r.key->size() * 4) != 0) {
    return absl::InvalidArgumentError(
        "value: mla derives keys and values from one latent of `key`; value must be absent or "
        "equal to key");
  }
  return r;
}

float* Destination(float* given, Tensor& owned, std::vector<int64_t> shape) {
  if (given != nullptr) return given;
  owned = Tensor(std::move(shape));
  return owned.data();
}

}  // namespace attention::internal
