// Conversions between the wire's 16-bit float formats and float32, the
// compute type of core/.
//
// FLOAT16 is IEEE 754 binary16; BFLOAT16 is the upper half of a binary32.
// Float32 -> 16-bit rounds to nearest, ties to even; NaN stays NaN (quiet),
// values beyond the range become infinity. All functions are thread-safe.
#ifndef ATTENTION_CORE_DTYPE_H_
#define ATTENTION_CORE_DTYPE_H_

#include <cstdint>

namespace attention {

// kInt8 is a KV-cache storage type (kv_cache.h: int8 values with a float32
// scale per row), not a wire tensor type; as plain elements it decodes to
// the integers' values.
enum class DType { kFloat32, kFloat16, kBfloat16, kBool, kInt8 };

// Bytes per element on the wire.
int DTypeSize(DType dtype);
const char* DTypeName(DType dtype);

float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);
float Bfloat16ToFloat(uint16_t b);
uint16_t FloatToBfloat16(float f);

// Bulk versions over n elements (F16C-accelerated for FLOAT16).
void HalfToFloat(const uint16_t* in, float* out, int64_t n);
void FloatToHalf(const float* in, uint16_t* out, int64_t n);
void Bfloat16ToFloat(const uint16_t* in, float* out, int64_t n);
void FloatToBfloat16(const float* in, uint16_t* out, int64_t n);
// x[i] = Bfloat16ToFloat(FloatToBfloat16(x[i])) in place: float32 values
// that a bfloat16 holds exactly (what bf16 compute's operands are).
void RoundToBfloat16(float* x, int64_t n);

// Decodes n little-endian elements of `dtype` at `bytes` into float32
// (BOOL: 1.0f for nonzero). `bytes` need not be aligned.
void DecodeToFloat(DType dtype, const void* bytes, int64_t n, float* out);
// Encodes n floats as `dtype` into `bytes`, which must hold n *
// DTypeSize(dtype) bytes (INT8: rounded to nearest and saturated to ±127;
// NaN is undefined).
void EncodeFromFloat(DType dtype, const float* in, int64_t n, void* bytes);

}  // namespace attention

#endif  // ATTENTION_CORE_DTYPE_H_
