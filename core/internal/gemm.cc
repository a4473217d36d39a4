#include "core/internal/gemm.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/dtype.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace attention::internal {
namespace {

using Key = std::tuple<int64_t, int64_t, int64_t,  // M N K
                       int64_t, int64_t,           // A strides
                       int64_t, int64_t,           // B strides
                       int64_t, bool, bool,        // ldc, bias, accumulate
                       bool>;                      // bf16 A and B

struct Entry {
  dnnl::matmul primitive;
  dnnl::memory::desc src, weights, dst, bias, scratchpad;
  size_t scratchpad_bytes = 0;
};

constexpr size_t kMaxCachedPrimitives = 1024;
constexpr int64_t kSgemmMaxRows = 32;

dnnl::engine& Engine() {
  static dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

class PrimitiveCache {
 public:
  std::shared_ptr<const Entry> Get(const Key& key) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = map_.find(key);
      if (it != map_.end()) return it->second;
    }
    auto entry = Build(key);  // may throw dnnl::error
    std::lock_guard<std::mutex> lock(mu_);
    if (map_.size() >= kMaxCachedPrimitives) map_.clear();  // bound memory; rebuilt on demand
    map_.emplace(key, entry);
    return entry;
  }

  int64_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int64_t>(map_.size());
  }

  static dnnl::matmul::primitive_desc Describe(const Key& key) {
    const auto [m, n, k, ars, acs, brs, bcs, ldc, bias, accumulate, bf16] = key;
    using dt = dnnl::memory::data_type;
    const dt in_type = bf16 ? dt::bf16 : dt::f32;
    dnnl::memory::desc a_md({m, k}, in_type, {ars, acs});
    dnnl::memory::desc b_md({k, n}, in_type, {brs, bcs});
    dnnl::memory::desc c_md({m, n}, dt::f32, {ldc, 1});
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (accumulate) {
      dnnl::post_ops ops;
      ops.append_sum(1.0f);
      attr.set_post_ops(ops);
    }
    if (bias) {
      dnnl::memory::desc bias_md({1, n}, dt::f32, {n, 1});
      return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, bias_md, c_md), attr,
                                          Engine());
    }
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), attr, Engine());
  }

 private:
  static std::shared_ptr<const Entry> Build(const Key& key) {
    auto pd = Describe(key);
    auto entry = std::make_shared<Entry>();
    entry->src = pd.src_desc();
    entry->weights = pd.weights_desc();
    entry->dst = pd.dst_desc();
    entry->bias = pd.bias_desc();
    entry->scratchpad = pd.scratchpad_desc();
    entry->scratchpad_bytes = entry->scratchpad.get_size();
    entry->primitive = dnnl::matmul(pd);
    return entry;
  }

  std::mutex mu_;
  absl::flat_hash_map<Key, std::shared_ptr<const Entry>> map_ ABSL_GUARDED_BY(mu_);
};

PrimitiveCache& Cache() {
  static PrimitiveCache* cache = new PrimitiveCache;
  return *cache;
}

// Per-thread execution state: a stream and a growing scratchpad.
struct ThreadState {
  dnnl::stream stream{Engine()};
  std::vector<unsigned char> scratchpad;
};

ThreadState& State() {
  thread_local ThreadState state;
  return state;
}

// A dimension of extent 1 has no stride: its stride is whatever the
// operand's other stride needs for a valid leading dimension. A column
// vector (cols 1, e.g. V of Dv = 1, or Kᵀ of one key) is row-major with
// col stride 1; a single row is row-major with ld = cols when it is
// contiguous, else transposed with row stride 1. Without this a [K, 1]
// matrix of row stride 1 read as "transposed" and sgemm refused its ld 1 < K.
Mat Canonical(Mat m) {
  if (m.cols == 1) m.col_stride = 1;
  if (m.rows == 1) {
    if (m.col_stride == 1) {
      m.row_stride = m.cols;
    } else {
      m.row_stride = 1;
    }
  }
  return m;
}

Key MakeKey(const Mat& a, const Mat& b, int64_t ldc, bool bias, bool accumulate) {
  return Key{a.rows,       b.cols, a.cols, a.row_stride, a.col_stride,     b.row_stride,
             b.col_stride, ldc,    bias,   accumulate,   b.bf16 != nullptr};
}

// Runs a cached primitive; a_data and b_data are float32 or bf16 as the key
// says.
absl::Status RunPrimitive(const Key& key, const void* a_data, const void* b_data, float* c,
                          const float* bias) {
  try {
    std::shared_ptr<const Entry> entry = Cache().Get(key);
    ThreadState& state = State();
    if (state.scratchpad.size() < entry->scratchpad_bytes) {
      state.scratchpad.resize(entry->scratchpad_bytes);
    }
    dnnl::memory a_mem(entry->src, Engine(), const_cast<void*>(a_data));
    dnnl::memory b_mem(entry->weights, Engine(), const_cast<void*>(b_data));
    dnnl::memory c_mem(entry->dst, Engine(), c);
    dnnl::memory s_mem(entry->scratchpad, Engine(), state.scratchpad.data());
    std::unordered_map<int, dnnl::memory> args = {{DNNL_ARG_SRC, a_mem},
                                                  {DNNL_ARG_WEIGHTS, b_mem},
                                                  {DNNL_ARG_DST, c_mem},
                                                  {DNNL_ARG_SCRATCHPAD, s_mem}};
    if (bias != nullptr) {
      args.emplace(DNNL_ARG_BIAS, dnnl::memory(entry->bias, Engine(), const_cast<float*>(bias)));
    }
    entry->primitive.execute(state.stream, args);
    state.stream.wait();
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat("oneDNN matmul [", std::get<0>(key), "x",
                                            std::get<2>(key), "]·[", std::get<2>(key), "x",
                                            std::get<1>(key), "] failed: ", e.what()));
  }
  return absl::OkStatus();
}

// A's elements rounded to bfloat16, dense [rows, cols], in float32.
std::vector<float> RoundedRows(const Mat& a) {
  std::vector<float> out(static_cast<size_t>(a.rows * a.cols));
  for (int64_t r = 0; r < a.rows; ++r) {
    float* dst = out.data() + r * a.cols;
    if (a.col_stride == 1) {
      std::memcpy(dst, a.data + r * a.row_stride, a.cols * sizeof(float));
    } else {
      for (int64_t c = 0; c < a.cols; ++c) dst[c] = a.data[r * a.row_stride + c * a.col_stride];
    }
  }
  RoundToBfloat16(out.data(), static_cast<int64_t>(out.size()));
  return out;
}

// Rows of A at most this many go to SmallRowsBf16 (decode's projections).
constexpr int64_t kSmallRowsMax = 16;

// C[M, N] (+)= A[M, K] · B for a bf16 B[k, n] = w[n · ldw + k] (an nn.Linear
// weight) and A already rounded (dense, [M, K]). Reads each weight once:
// four weight rows at a time are widened into an L1 buffer a chunk of K at
// a time, and every row of A takes its products from there; each (m, n)
// keeps eight float32 partial sums in lanes, summed at the end.
void SmallRowsBf16(const float* a, int64_t m, int64_t k, const uint16_t* w, int64_t ldw, int64_t n,
                   float* c, int64_t ldc, const float* bias, bool accumulate) {
  constexpr int64_t kRows = 4, kChunk = 512;
  const int64_t blocks = (n + kRows - 1) / kRows;
  const bool parallel = !omp_in_parallel() && blocks > 1 && m * n * k > (int64_t{1} << 18);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t n0 = blk * kRows, nr = std::min(kRows, n - n0);
    alignas(32) float wbuf[kRows][kChunk];
    __m256 acc[kSmallRowsMax][kRows];
    float tail[kSmallRowsMax][kRows] = {};
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < kRows; ++j) acc[i][j] = _mm256_setzero_ps();
    for (int64_t k0 = 0; k0 < k; k0 += kChunk) {
      const int64_t kc = std::min(kChunk, k - k0), kv = kc & ~int64_t{7};
      for (int64_t j = 0; j < kRows; ++j) {
        if (j < nr) {
          Bfloat16ToFloat(w + (n0 + j) * ldw + k0, wbuf[j], kc);
        } else {
          std::memset(wbuf[j], 0, kc * sizeof(float));
        }
      }
      for (int64_t i = 0; i < m; ++i) {
        const float* x = a + i * k + k0;
        __m256 s0 = acc[i][0], s1 = acc[i][1], s2 = acc[i][2], s3 = acc[i][3];
        for (int64_t t = 0; t < kv; t += 8) {
          const __m256 xv = _mm256_loadu_ps(x + t);
          s0 = _mm256_fmadd_ps(xv, _mm256_load_ps(wbuf[0] + t), s0);
          s1 = _mm256_fmadd_ps(xv, _mm256_load_ps(wbuf[1] + t), s1);
          s2 = _mm256_fmadd_ps(xv, _mm256_load_ps(wbuf[2] + t), s2);
          s3 = _mm256_fmadd_ps(xv, _mm256_load_ps(wbuf[3] + t), s3);
        }
        acc[i][0] = s0, acc[i][1] = s1, acc[i][2] = s2, acc[i][3] = s3;
        for (int64_t t = kv; t < kc; ++t) {
          for (int64_t j = 0; j < kRows; ++j) tail[i][j] += x[t] * wbuf[j][t];
        }
      }
    }
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < nr; ++j) {
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, acc[i][j]);
        float sum = tail[i][j];
        for (float x : lanes) sum += x;
        float* out = c + i * ldc + n0 + j;
        if (bias != nullptr) sum += bias[n0 + j];
        *out = accumulate ? *out + sum : sum;
      }
    }
  }
}

// One block of four weight rows (n0 ..): its own function, for the target
// attribute (an OpenMP-outlined loop body does not inherit it under clang).
constexpr int64_t kDpRows = 4;

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void DpBf16Block(
    const uint16_t* a, int64_t m, int64_t k, const uint16_t* w, int64_t ldw, int64_t n, float* c,
    int64_t ldc, const float* bias, bool accumulate, int64_t n0) {
  constexpr int64_t kRows = kDpRows, kChunk = 1024, kGroup = 4;
  {
    const int64_t nr = std::min(kRows, n - n0);
    float sums[kSmallRowsMax][kRows] = {};
    for (int64_t k0 = 0; k0 < k; k0 += kChunk) {
      const int64_t kc = std::min(kChunk, k - k0);
      for (int64_t i0 = 0; i0 < m; i0 += kGroup) {
        const int64_t mi = std::min(kGroup, m - i0);
        __m512 acc[kGroup][kRows];
        for (int64_t i = 0; i < kGroup; ++i)
          for (int64_t j = 0; j < kRows; ++j) acc[i][j] = _mm512_setzero_ps();
        for (int64_t t = 0; t < kc; t += 32) {
          const int64_t rem = std::min<int64_t>(32, kc - t);
          const __mmask32 lanes = rem == 32 ? ~__mmask32{0} : (__mmask32{1} << rem) - 1;
          __m512bh wv[kRows];
          for (int64_t j = 0; j < kRows; ++j) {
            wv[j] = j < nr ? (__m512bh)_mm512_maskz_loadu_epi16(lanes, w + (n0 + j) * ldw + k0 + t)
                           : (__m512bh)_mm512_setzero_si512();
          }
          for (int64_t i = 0; i < mi; ++i) {
            const __m512bh xv =
                (__m512bh)_mm512_maskz_loadu_epi16(lanes, a + (i0 + i) * k + k0 + t);
            for (int64_t j = 0; j < kRows; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
          }
        }
        for (int64_t i = 0; i < mi; ++i) {
          for (int64_t j = 0; j < nr; ++j) {
            alignas(64) float part[16];
            _mm512_store_ps(part, acc[i][j]);
            float sum = 0.0f;
            for (float x : part) sum += x;
            sums[i0 + i][j] += sum;
          }
        }
      }
    }
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < nr; ++j) {
        float sum = sums[i][j];
        float* out = c + i * ldc + n0 + j;
        if (bias != nullptr) sum += bias[n0 + j];
        *out = accumulate ? *out + sum : sum;
      }
    }
  }
}

// SmallRowsBf16 on a CPU with AVX512_BF16 (Bf16MatmulAvailable): A in bf16
// too (dense [M, K], the rounded A), and vdpbf16ps multiplies pairs of
// elements of A and the weight rows, adding into float32 lanes, so neither
// operand is widened. Weight rows four at a time, a chunk of K at a time
// (8 KiB, read from L1 by each group of four rows of A).
void SmallRowsDpBf16(const uint16_t* a, int64_t m, int64_t k, const uint16_t* w, int64_t ldw,
                     int64_t n, float* c, int64_t ldc, const float* bias, bool accumulate) {
  const int64_t blocks = (n + kDpRows - 1) / kDpRows;
  const bool parallel = !omp_in_parallel() && blocks > 1 && m * n * k > (int64_t{1} << 18);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    DpBf16Block(a, m, k, w, ldw, n, c, ldc, bias, accumulate, blk * kDpRows);
  }
}

// A bf16 product without native bf16 matmuls: B widened to float32 a panel
// of columns at a time (about 4 MiB), each multiplied by the rounded A on
// the float32 path.
absl::Status WidenedBf16(const std::vector<float>& a, int64_t m, int64_t k, const Mat& b, float* c,
                         int64_t ldc, const float* bias, bool accumulate) {
  const int64_t panel = std::max<int64_t>(16, (int64_t{1} << 20) / std::max<int64_t>(k, 1));
  std::vector<float> wide(static_cast<size_t>(std::min(panel, b.cols) * k));
  for (int64_t n0 = 0; n0 < b.cols; n0 += panel) {
    const int64_t nc = std::min(panel, b.cols - n0);
    // wide holds the panel transposed: [nc, k], column j of B as row j.
    for (int64_t j = 0; j < nc; ++j) {
      const uint16_t* col = b.bf16 + (n0 + j) * b.col_stride;
      float* dst = wide.data() + j * k;
      if (b.row_stride == 1) {
        Bfloat16ToFloat(col, dst, k);
      } else {
        for (int64_t t = 0; t < k; ++t) dst[t] = Bfloat16ToFloat(col[t * b.row_stride]);
      }
    }
    absl::Status st =
        Matmul(Mat::RowMajor(a.data(), m, k, k), Mat::Transposed(wide.data(), k, nc, k), c + n0,
               ldc, bias == nullptr ? nullptr : bias + n0, accumulate);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

// A bf16 A's elements widened to float32, dense [rows, cols].
std::vector<float> WidenedRows(const Mat& a) {
  std::vector<float> out(static_cast<size_t>(a.rows * a.cols));
  for (int64_t r = 0; r < a.rows; ++r) {
    float* dst = out.data() + r * a.cols;
    if (a.col_stride == 1) {
      Bfloat16ToFloat(a.bf16 + r * a.row_stride, dst, a.cols);
    } else {
      for (int64_t c = 0; c < a.cols; ++c) {
        dst[c] = Bfloat16ToFloat(a.bf16[r * a.row_stride + c * a.col_stride]);
      }
    }
  }
  return out;
}

absl::Status MatmulBf16(const Mat& a, const Mat& b, float* c, int64_t ldc, const float* bias,
                        bool accumulate) {
  if (a.bf16 != nullptr && Bf16MatmulAvailable() &&
      (a.rows <= kSmallRowsMax || Bf16MatmulPreferred())) {
    return RunPrimitive(MakeKey(a, b, ldc, bias != nullptr, accumulate), a.bf16, b.bf16, c, bias);
  }
  const std::vector<float> rounded = a.bf16 != nullptr ? WidenedRows(a) : RoundedRows(a);
  if (a.rows <= kSmallRowsMax && b.row_stride == 1 && b.col_stride >= b.rows) {
    if (Bf16MatmulAvailable()) {
      std::vector<uint16_t> a16(rounded.size());
      FloatToBfloat16(rounded.data(), a16.data(), static_cast<int64_t>(rounded.size()));
      SmallRowsDpBf16(a16.data(), a.rows, a.cols, b.bf16, b.col_stride, b.cols, c, ldc, bias,
                      accumulate);
      return absl::OkStatus();
    }
    SmallRowsBf16(rounded.data(), a.rows, a.cols, b.bf16, b.col_stride, b.cols, c, ldc, bias,
                  accumulate);
    return absl::OkStatus();
  }
  if (!Bf16MatmulPreferred())
    return WidenedBf16(rounded, a.rows, a.cols, b, c, ldc, bias, accumulate);
  std::vector<uint16_t> a16(rounded.size());
  FloatToBfloat16(rounded.data(), a16.data(), static_cast<int64_t>(rounded.size()));
  const Mat dense_a = Mat::RowMajor(a16.data(), a.rows, a.cols, a.cols);
  return RunPrimitive(MakeKey(Canonical(dense_a), b, ldc, bias != nullptr, accumulate), a16.data(),
                      b.bf16, c, bias);
}

}  // namespace

bool Bf16MatmulAvailable() {
  static const bool available = [] {
    const char* forced = std::getenv("ATTN_ISA");
    if (forced != nullptr && std::strcmp(forced, "avx2") == 0) return false;
    const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
    if (isa != dnnl::cpu_isa::avx512_core_bf16 && isa != dnnl::cpu_isa::avx512_core_amx) {
      return false;
    }
    try {
      const uint16_t probe[16] = {};
      const Mat m = Mat::RowMajor(probe, 4, 4, 4);
      (void)PrimitiveCache::Describe(MakeKey(m, m, 4, false, false));
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return available;
}

bool Bf16MatmulPreferred() {
  static const bool preferred = [] {
    if (!Bf16MatmulAvailable()) return false;
    const char* forced = std::getenv("ATTN_BF16_GEMM");
    if (forced != nullptr && std::strcmp(forced, "native") == 0) return true;
    if (forced != nullptr && std::strcmp(forced, "widened") == 0) return false;
    // The two ways of one product of prefill's size, each warmed up, then
    // timed alternately; the faster one's best time wins.
    constexpr int64_t m = 256, k = 512, n = 512;
    std::vector<float> a(m * k, 0.5f), b(k * n, 0.25f), c(m * n);
    std::vector<uint16_t> a16(a.size()), b16(b.size());
    FloatToBfloat16(a.data(), a16.data(), static_cast<int64_t>(a.size()));
    FloatToBfloat16(b.data(), b16.data(), static_cast<int64_t>(b.size()));
    auto time = [&](bool native) {
      const auto start = std::chrono::steady_clock::now();
      // The primitives themselves (Matmul's bf16 path asks this function).
      const Mat am = native ? Mat::RowMajor(a16.data(), m, k, k) : Mat::RowMajor(a.data(), m, k, k);
      const Mat bm = native ? Mat::RowMajor(b16.data(), k, n, n) : Mat::RowMajor(b.data(), k, n, n);
      absl::Status st = native ? RunPrimitive(MakeKey(am, bm, n, false, false), a16.data(),
                                              b16.data(), c.data(), nullptr)
                               : RunPrimitive(MakeKey(am, bm, n, false, false), a.data(),
                                              b.data(), c.data(), nullptr);
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      return st.ok() ? secs : 1e9;
    };
    double native = 1e9, widened = 1e9;
    (void)time(true), (void)time(false);
    for (int round = 0; round < 5; ++round) {
      native = std::min(native, time(true));
      widened = std::min(widened, time(false));
    }
    return native <= widened;
  }();
  return preferred;
}

absl::Status Matmul(const Mat& a_in, const Mat& b_in, float* c, int64_t ldc, const float* bias,
                    bool accumulate) {
  const Mat a = Canonical(a_in), b = Canonical(b_in);
  if (a.rows == 1) ldc = std::max(ldc, b.cols);
  if (a.cols != b.rows) {
    return absl::InternalError(
        absl::StrCat("matmul: inner dimensions differ: ", a.cols, " vs ", b.rows));
  }
  if (b.bf16 != nullptr) return MatmulBf16(a, b, c, ldc, bias, accumulate);
  if (a.bf16 != nullptr) return absl::InternalError("matmul: a bf16 A needs a bf16 B");
  // Few rows against a transposed B (decode's Q·Kᵀ with the G heads of a
  // group, one job of a parallel team): oneDNN's sgemm beats the matmul
  // primitive's brgemm there. Only inside an active team, where sgemm runs
  // on the calling thread: outside one it would start its own. sgemm takes
  // only leading dimensions of at least the row length (lda, ldb >= K, ldc
  // >= N); any other layout goes to the primitive, which takes strides as
  // they are.
  if (a.rows <= kSgemmMaxRows && bias == nullptr && a.col_stride == 1 && b.row_stride == 1 &&
      a.row_stride >= a.cols && b.col_stride >= b.rows && ldc >= b.cols && omp_in_parallel()) {
    const dnnl_status_t st =
        dnnl_sgemm('N', 'T', a.rows, b.cols, a.cols, 1.0f, a.data, a.row_stride, b.data,
                   b.col_stride, accumulate ? 1.0f : 0.0f, c, ldc);
    if (st != dnnl_success) {
      return absl::InternalError(absl::StrCat("oneDNN sgemm [", a.rows, "x", a.cols, "]·[", b.rows,
                                              "x", b.cols, "] failed: status ",
                                              static_cast<int>(st)));
    }
    return absl::OkStatus();
  }
  return RunPrimitive(MakeKey(a, b, ldc, bias != nullptr, accumulate), a.data, b.data, c, bias);
}

absl::Status Linear(const float* x, int64_t m, int64_t k, int64_t ldx, const float* w, int64_t n,
                    const float* bias, float* y, int64_t ldy) {
  return Matmul(Mat::RowMajor(x, m, k, ldx), Mat::Transposed(w, k, n, k), y, ldy, bias);
}

absl::Status Linear(const float* x, int64_t m, int64_t k, int64_t ldx, WeightRef w, int64_t n,
                    const float* bias, float* y, int64_t ldy) {
  if (w.bf16 == nullptr) return Linear(x, m, k, ldx, w.f32, n, bias, y, ldy);
  return Matmul(Mat::RowMajor(x, m, k, ldx), Mat::Transposed(w.bf16, k, n, k), y, ldy, bias);
}

std::string MatmulImplName(const Mat& a, const Mat& b, int64_t ldc, bool bias, bool accumulate) {
  try {
    return PrimitiveCache::Describe(MakeKey(Canonical(a), Canonical(b), ldc, bias, accumulate))
        .impl_info_str();
  } catch (const dnnl::error& e) {
    return absl::StrCat("error: ", e.what());
  }
}

int64_t MatmulCacheSize() { return Cache().size(); }

}  // namespace attention::internal
