#include "bench/layer_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/decode.h"
#include "core/paged_attention.h"
#include "core/sdpa.h"

namespace attention::bench {
namespace {

// Layer configs of the variant comparison at d_model 4096.
std::vector<std::pair<std::string, ModuleConfig>> DecodeVariants() {
  ModuleConfig mha;
  mha.variant = Variant::kMha;
  mha.d_model = 4096;
  mha.num_heads = 32;
  mha.bias = false;
  ModuleConfig gqa = mha;
  gqa.variant = Variant::kGqa;
  gqa.num_kv_heads = 8;
  ModuleConfig mqa = mha;
  mqa.variant = Variant::kMqa;
  ModuleConfig mla = mha;
  mla.variant = Variant::kMla;
  mla.q_lora_rank = 1536;
  mla.kv_lora_rank = 512;
  mla.qk_nope_head_dim = 128;
  mla.qk_rope_head_dim = 64;
  mla.v_head_dim = 128;
  return {{"mha_h32", mha}, {"gqa_h32kv8", gqa}, {"mqa_h32", mqa}, {"mla_h32_r512", mla}};
}

// The (KV-cache dtype, compute dtype) pairs of the layer-decode table; the
// all-f32 pair first, the reference of the "vs f32" columns.
std::vector<std::pair<DType, DType>> DecodeDTypes(const Options& opt) {
  std::vector<std::pair<DType, DType>> pairs = {{DType::kFloat32, DType::kFloat32}};
  if (Wants(opt, DType::kFloat32)) {
    for (const DType kv : {DType::kBfloat16, DType::kFloat16, DType::kInt8})
      pairs.push_back({kv, DType::kFloat32});
  }
  // bf16 weights and cache: the narrow layer.
  if (Wants(opt, DType::kBfloat16)) pairs.push_back({DType::kBfloat16, DType::kBfloat16});
  return pairs;
}

// One decode step of the whole layer, then its attention alone (PagedSdpa
// over the stream's cache of lk tokens), in one pair of dtypes.
absl::StatusOr<DecodeRow> MeasureDecode(const std::string& name, ModuleConfig config,
                                        DType kv_dtype, DType compute, int64_t batch, int64_t lk,
                                        Probes& probes, double min_time) {
  config.kv_cache_dtype = kv_dtype;
  config.compute_dtype = compute;
  auto module = AttentionModule::CreateRandom(config, 1);
  if (!module.ok()) return module.status();
  const int64_t per_token = KvCacheBytesPerToken(config);
  auto pool = KvBlockPool::Create(per_token * batch * (lk + 64) + (int64_t{64} << 20), 64 << 10);
  if (!pool.ok()) return pool.status();
  std::shared_ptr<const AttentionModule> m = std::move(*module);
  auto session = DecodeSession::Create(m, batch, 0, pool->get());
  if (!session.ok()) return session.status();
  // Fill the cache with lk tokens of small random values (contents do not
  // change the cost), then time single-token steps, resetting the length.
  PagedKvCache& cache = (*session)->mutable_cache();
  if (absl::Status s = cache.Reserve(lk + 1); !s.ok()) return s;
  const KvLayout& layout = cache.layout();
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> dist(-0.1f, 0.1f);
  std::vector<float> row(static_cast<size_t>(std::max(layout.k_width, layout.v_width)));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < layout.heads; ++h)
      for (int64_t t = 0; t < lk; ++t) {
        for (float& x : row) x = dist(gen);
        cache.StoreK(b, h, t, row.data());
        if (!layout.v_in_k) cache.StoreV(b, h, t, row.data());
      }
  cache.Advance(lk);
  const auto x = RandomBuffer(batch * config.d_model, 5);
  Tensor tokens({batch, 1, config.d_model}, x);
  absl::Status status;
  const Timing layer = TimeRuns(
      [&] {
        status = (*session)->Step(tokens).status();
        cache.Advance(-1);  // keep Lk fixed
      },
      min_time);
  if (!status.ok()) return status;
  // The attention alone: one query row per head over the lk cached.
  const int64_t hq = NumQueryHeads(config);
  std::vector<float> q = RandomBuffer(batch * hq * layout.k_width, 6);
  // As the layer's bf16 query projection would leave it (no cost change).
  if (compute == DType::kBfloat16) RoundToBfloat16(q.data(), static_cast<int64_t>(q.size()));
  std::vector<float> out(static_cast<size_t>(batch * hq * layout.v_width));
  const Interleaved attention = TimeInterleaved(
      [&] {
        if (status.ok()) {
          status = PagedSdpa(View4::Dense(q.data(), batch, hq, 1, layout.k_width), cache, 0.05f,
                             MutView4::Dense(out.data(), batch, hq, 1, layout.v_width));
        }
      },
      probes.For(compute), probes.bandwidth, min_time);
  if (!status.ok()) return status;
  DecodeRow r;
  r.variant = name;
  r.kv_dtype = kv_dtype;
  r.compute = compute;
  r.kv_bytes_per_token = per_token;
  const double kv_bytes = static_cast<double>(per_token) * batch * lk;
  r.kv_cache_mib = kv_bytes / 1048576.0;
  r.layer_seconds = layer.best;
  r.layer_tokens_per_s = batch / layer.best;
  r.attention_seconds = attention.workload.best;
  r.attention_kv_gbs = kv_bytes / r.attention_seconds / 1e9;
  r.gemm_gflops = attention.gemm_gflops;
  r.bandwidth_gbs = attention.bandwidth_gbs;
  // The cache's stored bytes (int8 scales included) are the bytes; the
  // query and output rows are a few KiB beside them.
  const double flops = SdpaFlops(batch, hq, 1, lk, layout.k_width, layout.v_width, false);
  r.attention_roof =
      RoofOf(kv_bytes, flops, attention.bandwidth_gbs, attention.gemm_gflops, r.attention_seconds);
  return r;
}

// The windowed-decode rows' layer (MeasureWindowDecode).
constexpr char kWindowVariant[] = "gqa_h32kv8_w4096";

// A stream of a windowed layer brought to `position` tokens per row without
// computing: chunk by chunk (R tokens, so no chunk is ever transposed), the
// rows written only where the next token's window sees them (values from
// `rows`: contents do not change the cost), the rest dropped behind the
// window after each chunk as the layer's own steps do.
absl::StatusOr<std::unique_ptr<DecodeSession>> WindowedStreamAt(
    std::shared_ptr<const AttentionModule> m, int64_t batch, int64_t position, KvBlockPool* pool,
    const std::vector<float>& rows) {
  auto session = DecodeSession::Create(m, batch, 0, pool);
  if (!session.ok()) return session.status();
  PagedKvCache& cache = (*session)->mutable_cache();
  const KvLayout& layout = cache.layout();
  const int64_t w = m->config().sliding_window, r = cache.plan().chunk_tokens;
  const int64_t width = layout.k_width, n_rows = static_cast<int64_t>(rows.size()) / width;
  while (cache.length() < position) {
    const int64_t l0 = cache.length(), n = std::min(r, position - l0);
    if (absl::Status s = cache.Reserve(n); !s.ok()) return s;
    for (int64_t t = std::max(l0, position - w); t < l0 + n; ++t) {
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t h = 0; h < layout.heads; ++h) {
          const float* row = rows.data() + ((t * batch + b) * layout.heads + h) % n_rows * width;
          cache.StoreK(b, h, t, row);
          cache.StoreV(b, h, t, row);
        }
      }
    }
    cache.Advance(n);
    cache.DropBefore(cache.length() - w + 1);
  }
  return session;
}

Timing Summary(std::vector<double> times) {
  std::sort(times.begin(), times.end());
  return {times.front(), times[times.size() / 2]};
}

// Runs fn(i) for i = 0 .. n - 1 in turn until n·min_time has passed (at
// least 3 rounds, after one warm-up round), each timed; their timings.
template <typename Fn>
std::vector<Timing> TimeAlternately(int64_t n, Fn fn, double min_time) {
  for (int64_t i = 0; i < n; ++i) fn(i);
  std::vector<std::vector<double>> times(static_cast<size_t>(n));
  const auto start = Clock::now();
  while (times[0].size() < 3 ||
         std::chrono::duration<double>(Clock::now() - start).count() < min_time * n) {
    for (int64_t i = 0; i < n; ++i) times[i].push_back(Seconds([&] { fn(i); }));
    if (times[0].size() >= 10000) break;
  }
  std::vector<Timing> timings;
  for (std::vector<double>& t : times) timings.push_back(Summary(std::move(t)));
  return timings;
}

// The windowed gqa layer's decode steps at positions 2W and 16W.
absl::StatusOr<std::vector<WindowDecodeRow>> MeasureWindowDecode(int64_t batch, double min_time) {
  ModuleConfig config;
  config.variant = Variant::kGqa;
  config.d_model = 4096;
  config.num_heads = 32;
  config.num_kv_heads = 8;
  config.bias = false;
  config.sliding_window = 4096;
  const int64_t w = config.sliding_window;
  auto module = AttentionModule::CreateRandom(config, 1);
  if (!module.ok()) return module.status();
  std::shared_ptr<const AttentionModule> m = std::move(*module);
  const KvLayout layout = CacheLayout(config);
  const int64_t block_bytes = 64 << 10;
  auto plan = PlanKvBlocks(layout, batch, block_bytes);
  if (!plan.ok()) return plan.status();
  // Each stream holds at most WindowBlocks(W, R) blocks (kv_cache.h): its
  // fill's chunks are R tokens, its steps one.
  const std::vector<int64_t> positions = {2 * w, 16 * w};
  auto pool = KvBlockPool::Create(
      static_cast<int64_t>(positions.size()) * plan->WindowBlocks(w, plan->chunk_tokens) *
          block_bytes,
      block_bytes);
  if (!pool.ok()) return pool.status();
  const std::vector<float> rows = RandomBuffer(4099 * layout.k_width, 2);
  std::vector<std::unique_ptr<DecodeSession>> sessions;
  for (const int64_t position : positions) {
    auto session = WindowedStreamAt(m, batch, position, pool->get(), rows);
    if (!session.ok()) return session.status();
    sessions.push_back(*std::move(session));
  }
  std::vector<WindowDecodeRow> out(positions.size());
  for (size_t i = 0; i < positions.size(); ++i) {
    const PagedKvCache& cache = sessions[i]->cache();
    out[i].variant = kWindowVariant;
    out[i].batch = batch;
    out[i].window = w;
    out[i].position = positions[i];
    out[i].kv_held_mib = static_cast<double>(cache.blocks_held() * block_bytes) / 1048576.0;
    out[i].kv_appended_mib = static_cast<double>(positions[i] * batch) *
                             static_cast<double>(layout.BytesPerToken()) / 1048576.0;
  }
  const Tensor tokens({batch, 1, config.d_model}, RandomBuffer(batch * config.d_model, 5));
  absl::Status status;
  const std::vector<Timing> layer = TimeAlternately(
      static_cast<int64_t>(sessions.size()),
      [&](int64_t i) {
        if (status.ok()) status = sessions[i]->Step(tokens).status();
      },
      min_time);
  if (!status.ok()) return status;
  // The attention alone: one query row per head, the newest token's, over
  // its window (a token appended and not dropped behind, as in a step).
  const int64_t hq = config.num_heads, d = layout.k_width;
  for (std::unique_ptr<DecodeSession>& session : sessions) {
    PagedKvCache& cache = session->mutable_cache();
    if (absl::Status s = cache.Reserve(1); !s.ok()) return s;
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t h = 0; h < layout.heads; ++h) {
        cache.StoreK(b, h, cache.length(), rows.data() + (b * layout.heads + h) * d);
        cache.StoreV(b, h, cache.length(), rows.data() + (b * layout.heads + h) * d);
      }
    }
    cache.Advance(1);
  }
  const std::vector<float> q = RandomBuffer(batch * hq * d, 6);
  std::vector<float> o(static_cast<size_t>(batch * hq * d));
  const std::vector<Timing> attention = TimeAlternately(
      static_cast<int64_t>(sessions.size()),
      [&](int64_t i) {
        if (status.ok()) {
          status = PagedSdpa(View4::Dense(q.data(), batch, hq, 1, d), sessions[i]->cache(),
                             0.05f, MutView4::Dense(o.data(), batch, hq, 1, d), DType::kFloat32, w);
        }
      },
      min_time);
  if (!status.ok()) return status;
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].layer = layer[i];
    out[i].layer_tokens_per_s = static_cast<double>(batch) / layer[i].best;
    out[i].layer_vs_first = layer[0].best / layer[i].best;
    out[i].attention = attention[i];
    out[i].attention_vs_first = attention[0].best / attention[i].best;
  }
  return out;
}

// The core's own time for the end-to-end row of the performance issue: a
// causal self-attention Forward of the server's demo-gqa layer (d_model 512,
// 8 query / 2 kv heads, biases) on [1, 2048, 512], in process: what the
// server's timing.compute_us measures for the same call, less conversion.
absl::StatusOr<ForwardRow> MeasureForward(DType compute, double min_time) {
  ModuleConfig config;
  config.variant = Variant::kGqa;
  config.d_model = 512;
  config.num_heads = 8;
  config.num_kv_heads = 2;
  config.compute_dtype = compute;
  auto module = AttentionModule::CreateRandom(config, 3);
  if (!module.ok()) return module.status();
  const int64_t b = 1, l = 2048;
  const Tensor x({b, l, config.d_model}, RandomBuffer(b * l * config.d_model, 7));
  ForwardInput in;
  in.query = &x;
  in.mask.causal = true;
  std::vector<float> out(static_cast<size_t>(b * l * config.d_model));
  in.output = out.data();  // as the server does: into the response's buffer
  absl::Status status;
  const Timing t = TimeRuns([&] { status = (*module)->Forward(in).status(); }, min_time);
  if (!status.ok()) return status;
  const double flops = LayerFlops(config, b, l, l, l, true, MlaForm::kNaive);
  ForwardRow row;
  row.name = "forward_gqa_d512_l2048_causal";
  row.compute = compute;
  row.timing = t;
  row.gflops = flops / t.best / 1e9;
  return row;
}

}  // namespace

int RunLayerDecode(const Options& opt, Probes& probes, Report& report) {
  const int64_t lk = 4096, batch = opt.decode_batch;
  bool begun = false;
  for (const auto& [name, config] : DecodeVariants()) {
    if (!opt.filter.empty() && name.find(opt.filter) == std::string::npos &&
        std::string("decode").find(opt.filter) == std::string::npos) {
      continue;
    }
    if (!begun) report.BeginDecode(batch, lk);
    begun = true;
    double f32_layer = 0, f32_attention = 0;
    for (const auto& [kv, compute] : DecodeDTypes(opt)) {
      absl::StatusOr<DecodeRow> row =
          MeasureDecode(name, config, kv, compute, batch, lk, probes, opt.min_time);
      if (!row.ok()) {
        std::fprintf(stderr, "%s: %s\n", name.c_str(), row.status().ToString().c_str());
        return 1;
      }
      if (kv == DType::kFloat32 && compute == DType::kFloat32) {
        f32_layer = row->layer_seconds;
        f32_attention = row->attention_seconds;
      }
      row->layer_vs_f32 = f32_layer / row->layer_seconds;
      row->attention_vs_f32 = f32_attention / row->attention_seconds;
      report.AddDecode(*row);
    }
  }
  return 0;
}

int RunWindowDecode(const Options& opt, Report& report) {
  if (!opt.filter.empty() && std::string("window_decode").find(opt.filter) == std::string::npos &&
      std::string(kWindowVariant).find(opt.filter) == std::string::npos) {
    return 0;
  }
  absl::StatusOr<std::vector<WindowDecodeRow>> rows =
      MeasureWindowDecode(opt.decode_batch, opt.min_time);
  if (!rows.ok()) {
    std::fprintf(stderr, "window decode: %s\n", rows.status().ToString().c_str());
    return 1;
  }
  for (const WindowDecodeRow& row : *rows) report.AddWindowDecode(row);
  return 0;
}

int RunLayerForward(const Options& opt, Report& report) {
  for (const DType compute : {DType::kFloat32, DType::kBfloat16}) {
    if (!Wants(opt, compute)) continue;
    absl::StatusOr<ForwardRow> row = MeasureForward(compute, opt.min_time);
    if (!row.ok()) {
      std::fprintf(stderr, "layer forward (%s): %s\n", ShortDTypeName(compute),
                   row.status().ToString().c_str());
      return 1;
    }
    report.AddForward(*row);
  }
  return 0;
}

}  // namespace attention::bench
