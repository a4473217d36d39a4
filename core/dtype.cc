#include "core/dtype.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>

namespace attention {
namespace {

uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

int DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 4;
    case DType::kFloat16:
    case DType::kBfloat16:
      return 2;
    case DType::kBool:
    case DType::kInt8:
      return 1;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "FLOAT32";
    case DType::kFloat16:
      return "FLOAT16";
    case DType::kBfloat16:
      return "BFLOAT16";
    case DType::kBool:
      return "BOOL";
    case DType::kInt8:
      return "INT8";
  }
  return "?";
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0x1f) return BitsFloat(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return BitsFloat(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return BitsFloat(sign);  // +-0
  // Subnormal half: normalise.
  int e = -1;
  do {
    ++e;
    mant <<= 1;
  } while ((mant & 0x400) == 0);
  mant &= 0x3ff;
  return BitsFloat(sign | static_cast<uint32_t>(112 - e) << 23 | (mant << 13));
}

uint16_t FloatToHalf(float f) {
  const uint32_t x = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t abs = x & 0x7fffffff;
  if (abs > 0x7f800000u) return sign | 0x7e00;   // NaN -> quiet NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00;  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {                       // below the smallest normal half
    if (abs < 0x33000000u) return sign;          // < half of the smallest subnormal
    // Subnormal: shift the full mantissa into place, round to nearest even.
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) ++r;
    return sign | static_cast<uint16_t>(r);
  }
  // Normal: rebias and round the 13 dropped bits to nearest even.
  uint32_t r = abs - 0x38000000u;
  r += 0xfff + ((r >> 13) & 1);
  return sign | static_cast<uint16_t>(r >> 13);
}

float Bfloat16ToFloat(uint16_t b) { return BitsFloat(static_cast<uint32_t>(b) << 16); }

uint16_t FloatToBfloat16(float f) {
  const uint32_t x = FloatBits(f);
  if ((x & 0x7fffffff) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

void HalfToFloat(const uint16_t* in, float* out, int64_t n) {
  int64_t i = 0;
#ifdef __F16C__
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
#endif
  for (; i < n; ++i) out[i] = HalfToFloat(in[i]);
}

void FloatToHalf(const float* in, uint16_t* out, int64_t n) {
  int64_t i = 0;
#ifdef __F16C__
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
#endif
  for (; i < n; ++i) out[i] = FloatToHalf(in[i]);
}

void Bfloat16ToFloat(const uint16_t* in, float* out, int64_t n) {
  int64_t i = 0;
#ifdef __AVX2__
  for (; i + 8 <= n; i += 8) {
    const __m256i w =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_slli_epi32(w, 16));
  }
#endif
  for (; i < n; ++i) out[i] = Bfloat16ToFloat(in[i]);
}

void FloatToBfloat16(const float* in, uint16_t* out, int64_t n) {
  int64_t i = 0;
#ifdef __AVX2__
  // Round to nearest even on the integer bits, as the scalar version; NaN
  // lanes are quieted instead.
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
  const __m256i quiet = _mm256_set1_epi32(0x400000);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  for (; i + 16 <= n; i += 16) {
    __m256i r[2];
    for (int h = 0; h < 2; ++h) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i + 8 * h));
      const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, abs_mask), inf);
      const __m256i rounded = _mm256_add_epi32(
          x, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(x, 16), one)));
      r[h] = _mm256_srli_epi32(_mm256_blendv_epi8(rounded, _mm256_or_si256(x, quiet), nan), 16);
    }
    // packus works within 128-bit lanes: reorder the 64-bit quarters after.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), packed);
  }
#endif
  for (; i < n; ++i) out[i] = FloatToBfloat16(in[i]);
}

void RoundToBfloat16(float* x, int64_t n) {
  int64_t i = 0;
#ifdef __AVX2__
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
  const __m256i quiet = _mm256_set1_epi32(0x400000), high = _mm256_set1_epi32(-65536);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  for (; i + 8 <= n; i += 8) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(v, abs_mask), inf);
    const __m256i rounded = _mm256_add_epi32(
        v, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(v, 16), one)));
    const __m256i r =
        _mm256_and_si256(_mm256_blendv_epi8(rounded, _mm256_or_si256(v, quiet), nan), high);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x + i), r);
  }
#endif
  for (; i < n; ++i) x[i] = Bfloat16ToFloat(FloatToBfloat16(x[i]));
}

void DecodeToFloat(DType dtype, const void* bytes, int64_t n, float* out) {
  switch (dtype) {
    case DType::kFloat32:
      std::memcpy(out, bytes, static_cast<size_t>(n) * 4);
      return;
    case DType::kFloat16:
    case DType::kBfloat16: {
      // The wire buffer may be unaligned: convert through an aligned chunk.
      const auto* p = static_cast<const unsigned char*>(bytes);
      uint16_t chunk[1024];
      for (int64_t i = 0; i < n; i += 1024) {
        const int64_t m = n - i < 1024 ? n - i : 1024;
        std::memcpy(chunk, p + 2 * i, static_cast<size_t>(m) * 2);
        if (dtype == DType::kFloat16) {
          HalfToFloat(chunk, out + i, m);
        } else {
          Bfloat16ToFloat(chunk, out + i, m);
        }
      }
      return;
    }
    case DType::kBool: {
      const auto* p = static_cast<const unsigned char*>(bytes);
      for (int64_t i = 0; i < n; ++i) out[i] = p[i] != 0 ? 1.0f : 0.0f;
      return;
    }
    case DType::kInt8: {
      const auto* p = static_cast<const signed char*>(bytes);
      for (int64_t i = 0; i < n; ++i) out[i] = p[i];
      return;
    }
  }
}

void EncodeFromFloat(DType dtype, const float* in, int64_t n, void* bytes) {
  switch (dtype) {
    case DType::kFloat32:
      std::memcpy(bytes, in, static_cast<size_t>(n) * 4);
      return;
    case DType::kFloat16:
    case DType::kBfloat16: {
      auto* p = static_cast<unsigned char*>(bytes);
      uint16_t chunk[1024];
      for (int64_t i = 0; i < n; i += 1024) {
        const int64_t m = n - i < 1024 ? n - i : 1024;
        if (dtype == DType::kFloat16) {
          FloatToHalf(in + i, chunk, m);
        } else {
          FloatToBfloat16(in + i, chunk, m);
        }
        std::memcpy(p + 2 * i, chunk, static_cast<size_t>(m) * 2);
      }
      return;
    }
    case DType::kBool: {
      auto* p = static_cast<unsigned char*>(bytes);
      for (int64_t i = 0; i < n; ++i) p[i] = in[i] != 0.0f ? 1 : 0;
      return;
    }
    case DType::kInt8: {  // rounded to nearest, saturated
      auto* p = static_cast<signed char*>(bytes);
      for (int64_t i = 0; i < n; ++i) {
        p[i] = static_cast<signed char>(std::lrint(std::fmin(127.0f, std::fmax(-127.0f, in[i]))));
      }
      return;
    }
  }
}

}  // namespace attention
