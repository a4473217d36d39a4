#include "core/internal/gemm.h"

#include <omp.h>

#include <algorithm>
#include <memory>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include <mutex>
#include "oneapi/dnnl/dnnl.hpp"

namespace attention::internal {
namespace {

using Key = std::tuple<int64_t, int64_t, int64_t,  // M N K
                       int64_t, int64_t,           // A strides
                       int64_t, int64_t,           // B strides
                       int64_t, bool, bool>;       // ldc, bias, accumulate

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
    const auto [m, n, k, ars, acs, brs, bcs, ldc, bias, accumulate] = key;
    using dt = dnnl::memory::data_type;
    dnnl::memory::desc a_md({m, k}, dt::f32, {ars, acs});
    dnnl::memory::desc b_md({k, n}, dt::f32, {brs, bcs});
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
  return Key{a.rows, b.cols, a.cols, a.row_stride, a.col_stride, b.row_stride, b.col_stride, ldc,
             bias, accumulate};
}

}  // namespace

absl::Status Matmul(const Mat& a_in, const Mat& b_in, float* c, int64_t ldc, const float* bias,
                    bool accumulate) {
  const Mat a = Canonical(a_in), b = Canonical(b_in);
  if (a.rows == 1) ldc = std::max(ldc, b.cols);
  if (a.cols != b.rows) {
    return absl::InternalError(absl::StrCat("matmul: inner dimensions differ: ", a.cols, " vs ",
                                            b.rows));
  }
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
      return absl::InternalError(absl::StrCat("oneDNN sgemm [", a.rows, "x", a.cols, "]·[",
                                              b.rows, "x", b.cols, "] failed: status ",
                                              static_cast<int>(st)));
    }
    return absl::OkStatus();
  }
  try {
    const Key key = MakeKey(a, b, ldc, bias != nullptr, accumulate);
    std::shared_ptr<const Entry> entry = Cache().Get(key);
    ThreadState& state = State();
    if (state.scratchpad.size() < entry->scratchpad_bytes) {
      state.scratchpad.resize(entry->scratchpad_bytes);
    }
    dnnl::memory a_mem(entry->src, Engine(), const_cast<float*>(a.data));
    dnnl::memory b_mem(entry->weights, Engine(), const_cast<float*>(b.data));
    dnnl::memory c_mem(entry->dst, Engine(), c);
    dnnl::memory s_mem(entry->scratchpad, Engine(), state.scratchpad.data());
    std::unordered_map<int, dnnl::memory> args = {{DNNL_ARG_SRC, a_mem},
                                                  {DNNL_ARG_WEIGHTS, b_mem},
                                                  {DNNL_ARG_DST, c_mem},
                                                  {DNNL_ARG_SCRATCHPAD, s_mem}};
    if (bias != nullptr) {
      args.emplace(DNNL_ARG_BIAS,
                   dnnl::memory(entry->bias, Engine(), const_cast<float*>(bias)));
    }
    entry->primitive.execute(state.stream, args);
    state.stream.wait();
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat("oneDNN matmul [", a.rows, "x", a.cols, "]·[", b.rows,
                                            "x", b.cols, "] failed: ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status Linear(const float* x, int64_t m, int64_t k, int64_t ldx, const float* w, int64_t n,
                    const float* bias, float* y, int64_t ldy) {
  return Matmul(Mat::RowMajor(x, m, k, ldx), Mat::Transposed(w, k, n, k), y, ldy, bias);
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
