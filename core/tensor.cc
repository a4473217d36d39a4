#include "core/tensor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_join.h"

namespace attention {

int64_t NumElements(absl::Span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && n > INT64_MAX / d) return -1;
    n *= d;
  }
  return n;
}

int64_t NumBytes(absl::Span<const int64_t> shape, int64_t element_bytes) {
  const int64_t n = NumElements(shape);
  int64_t bytes;
  if (n < 0 || element_bytes < 0 || __builtin_mul_overflow(n, element_bytes, &bytes)) return -1;
  return bytes;
}

std::string ShapeString(absl::Span<const int64_t> shape) {
  return "[" + absl::StrJoin(shape, ", ") + "]";
}

Tensor::Tensor(std::vector<int64_t> shape)
    : shape_(std::move(shape)), values_(static_cast<size_t>(NumElements(shape_)), 0.0f) {}

Tensor::Tensor(std::vector<int64_t> shape, std::vector<float> values)
    : shape_(std::move(shape)), values_(std::move(values)) {}

View4 View4::Dense(const float* data, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  View4 v;
  v.data = data;
  v.dims[0] = d0;
  v.dims[1] = d1;
  v.dims[2] = d2;
  v.dims[3] = d3;
  v.strides[2] = d3;
  v.strides[1] = d2 * d3;
  v.strides[0] = d1 * d2 * d3;
  return v;
}

View4 View4::Of(const Tensor& t) { return Dense(t.data(), t.dim(0), t.dim(1), t.dim(2), t.dim(3)); }

Bf16View4 Bf16View4::Dense(const uint16_t* data, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  Bf16View4 v;
  v.data = data;
  const View4 shape = View4::Dense(nullptr, d0, d1, d2, d3);
  std::copy_n(shape.dims, 4, v.dims);
  std::copy_n(shape.strides, 3, v.strides);
  return v;
}

View4 Bf16View4::Shape() const {
  View4 v;
  std::copy_n(dims, 4, v.dims);
  std::copy_n(strides, 3, v.strides);
  return v;
}

MutView4 MutView4::Dense(float* data, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  MutView4 v;
  v.data = data;
  v.dims[0] = d0;
  v.dims[1] = d1;
  v.dims[2] = d2;
  v.dims[3] = d3;
  v.strides[2] = d3;
  v.strides[1] = d2 * d3;
  v.strides[0] = d1 * d2 * d3;
  return v;
}

MutView4 MutView4::Of(Tensor& t) { return Dense(t.data(), t.dim(0), t.dim(1), t.dim(2), t.dim(3)); }

}  // namespace attention
