// Dense float32 tensors and strided views over them: the currency of core/.
//
// A `Tensor` owns a row-major float32 buffer and its shape. A `View4` is a
// non-owning 4-D window [d0, d1, d2, d3] whose innermost dimension is
// contiguous and whose outer three have arbitrary element strides, which is
// how attention reads heads out of a projection without copying them
// ([B, L, H, D] seen as [B, H, L, D]) and how MLA's value is a slice of its
// latent key.
#ifndef ATTENTION_CORE_TENSOR_H_
#define ATTENTION_CORE_TENSOR_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/types/span.h"

namespace attention {

// Number of elements of `shape`, or -1 if it overflows int64 or a dimension
// is negative.
int64_t NumElements(absl::Span<const int64_t> shape);

// Bytes of `shape` at `element_bytes` per element, or -1 if the element
// count or the bytes overflow int64 or a dimension is negative. Every byte
// count computed from wire dimensions goes through this.
int64_t NumBytes(absl::Span<const int64_t> shape, int64_t element_bytes);

// "[2, 3, 4]".
std::string ShapeString(absl::Span<const int64_t> shape);

class Tensor {
 public:
  Tensor() = default;
  // A zero-filled tensor of `shape`. The shape must be valid (checked by the
  // caller; see NumElements).
  explicit Tensor(std::vector<int64_t> shape);
  Tensor(std::vector<int64_t> shape, std::vector<float> values);

  const std::vector<int64_t>& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t size() const { return static_cast<int64_t>(values_.size()); }
  bool empty() const { return values_.empty(); }

  float* data() { return values_.data(); }
  const float* data() const { return values_.data(); }
  std::vector<float>& values() { return values_; }
  const std::vector<float>& values() const { return values_; }

 private:
  std::vector<int64_t> shape_;
  std::vector<float> values_;
};

// A read-only dense row-major tensor of any rank that someone else owns
// (a Tensor, or float32 bytes where protobuf parsed them): how inputs reach
// a layer without a copy. Converts implicitly from `const Tensor*`, nullptr
// meaning absent.
struct ConstTensorRef {
  const float* data = nullptr;
  std::vector<int64_t> shape;
  bool present = false;

  ConstTensorRef() = default;
  ConstTensorRef(const Tensor* t)  // NOLINT(google-explicit-constructor)
      : data(t != nullptr ? t->data() : nullptr),
        shape(t != nullptr ? t->shape() : std::vector<int64_t>()),
        present(t != nullptr) {}
  ConstTensorRef(const float* d, std::vector<int64_t> s)
      : data(d), shape(std::move(s)), present(true) {}

  int rank() const { return static_cast<int>(shape.size()); }
  int64_t dim(int i) const { return shape[i]; }
  int64_t size() const { return NumElements(shape); }
};

// A read-only 4-D view; element (i, j, k, l) lives at
// data[i * stride[0] + j * stride[1] + k * stride[2] + l].
struct View4 {
  const float* data = nullptr;
  int64_t dims[4] = {0, 0, 0, 0};
  int64_t strides[3] = {0, 0, 0};

  // The contiguous row-major view of a rank-4 tensor.
  static View4 Of(const Tensor& t);
  // A contiguous row-major view of `data` with `dims`.
  static View4 Dense(const float* data, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
  const float* Row(int64_t i, int64_t j, int64_t k) const {
    return data + i * strides[0] + j * strides[1] + k * strides[2];
  }
};

// A read-only 4-D view of bfloat16 elements (the upper 16 bits of a
// float32, as uint16_t), indexed as View4.
struct Bf16View4 {
  const uint16_t* data = nullptr;
  int64_t dims[4] = {0, 0, 0, 0};
  int64_t strides[3] = {0, 0, 0};

  // A contiguous row-major view of `data` with `dims`.
  static Bf16View4 Dense(const uint16_t* data, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
  const uint16_t* Row(int64_t i, int64_t j, int64_t k) const {
    return data + i * strides[0] + j * strides[1] + k * strides[2];
  }
  // Its dims and strides as a View4 without data (for shape checks).
  View4 Shape() const;
};

// The writable counterpart of View4.
struct MutView4 {
  float* data = nullptr;
  int64_t dims[4] = {0, 0, 0, 0};
  int64_t strides[3] = {0, 0, 0};

  static MutView4 Of(Tensor& t);
  static MutView4 Dense(float* data, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
  float* Row(int64_t i, int64_t j, int64_t k) const {
    return data + i * strides[0] + j * strides[1] + k * strides[2];
  }
};

}  // namespace attention

#endif  // ATTENTION_CORE_TENSOR_H_
