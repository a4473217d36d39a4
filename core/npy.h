// Reading and writing NumPy .npy files (format versions 1.0-3.0, C order,
// little-endian) so tensors move between this project, NumPy and PyTorch.
#ifndef ATTENTION_CORE_NPY_H_
#define ATTENTION_CORE_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace attention {

struct NpyArray {
  std::string descr;  // NumPy dtype string, e.g. "<f4", "|u1", "<f2"
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // raw little-endian element bytes, C order
};

// Reads any C-order .npy file. Errors: NOT_FOUND (cannot open),
// INVALID_ARGUMENT (malformed header, Fortran order, big-endian, short data).
absl::StatusOr<NpyArray> ReadNpy(const std::string& path);

// Reads a .npy of float32/float16/float64, bool, or (u)int8/16/32/64 as a
// float32 Tensor.
absl::StatusOr<Tensor> ReadNpyAsFloat(const std::string& path);

// Writes `t` as "<f4" (or, for kFloat16, "<f2"; kBfloat16 is not a NumPy
// type and is refused).
absl::Status WriteNpy(const std::string& path, const Tensor& t, DType dtype = DType::kFloat32);
// Writes raw bytes with the given NumPy descr.
absl::Status WriteNpyRaw(const std::string& path, const std::string& descr,
                         const std::vector<int64_t>& shape, const void* data, size_t nbytes);

}  // namespace attention

#endif  // ATTENTION_CORE_NPY_H_
