#include "client/compare.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <cstdio>
#include <functional>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/npy.h"
#include "core/status_macros.h"
#include "core/variant_convert.h"

namespace attention::client {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

Tensor RandomInput(std::vector<int64_t> shape, uint64_t seed) {
  Tensor t(std::move(shape));
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal;
  for (float& x : t.values()) x = normal(gen);
  return t;
}

double FrobeniusRelError(const Tensor& a, const Tensor& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a.data()[i]) - b.data()[i];
    num += d * d;
    den += static_cast<double>(b.data()[i]) * b.data()[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

bool HasBiases(const WeightMap& weights) {
  return std::any_of(weights.begin(), weights.end(),
                     [](const auto& entry) { return absl::EndsWith(entry.first, ".bias"); });
}

// Prefill and decode latency of `config` through the server (seeded weights:
// the cost does not depend on their values).
absl::Status MeasureLatency(AttentionClient& client, const CompareOptions& o, CompareRow& row) {
  const std::string name = absl::StrCat("compare-", o.seed, "-", row.variant.substr(0, 3), "-",
                                        NumKvHeads(row.config));
  ATTN_RETURN_IF_ERROR(
      client.LoadModule(name, ConfigToProto(row.config), {}, o.seed, /*replace=*/true).status());
  const Tensor x = RandomInput({o.batch, o.seq, o.d_model}, o.seed + 1);
  ForwardOptions fo;
  fo.mask.causal = true;
  {
    // The first call of a shape also builds its oneDNN primitives: small
    // problems take the better of two runs; large ones, where that cost
    // vanishes, run once.
    const int runs = x.size() <= (int64_t{4} << 20) ? 2 : 1;
    row.prefill_ms = 1e300;
    for (int i = 0; i < runs; ++i) {
      const auto start = Clock::now();
      ATTN_RETURN_IF_ERROR(client.Forward(name, x, fo).status());
      row.prefill_ms = std::min(row.prefill_ms, Ms(Clock::now() - start));
    }
  }
  {
    ATTN_ASSIGN_OR_RETURN(std::unique_ptr<DecodeStream> stream, client.StartDecode(name, o.batch));
    ATTN_RETURN_IF_ERROR(stream->Step(x).status());  // fills the cache (not timed)
    std::vector<double> steps;
    for (int64_t i = 0; i < std::max<int64_t>(1, o.decode_steps); ++i) {
      const Tensor token = RandomInput({o.batch, 1, o.d_model}, 100 + i);
      const auto start = Clock::now();
      ATTN_RETURN_IF_ERROR(stream->Step(token).status());
      steps.push_back(Ms(Clock::now() - start));
    }
    ATTN_RETURN_IF_ERROR(stream->Close());
    std::sort(steps.begin(), steps.end());
    row.decode_ms = steps[steps.size() / 2];
  }
  return client.UnloadModule(name);
}

}  // namespace

absl::StatusOr<std::vector<CompareRow>> RunCompare(AttentionClient& client,
                                                   const CompareOptions& o) {
  WeightMap state_dict;
  if (!o.weights_dir.empty()) {
    ATTN_ASSIGN_OR_RETURN(state_dict, ReadStateDict(o.weights_dir));
  }
  ModuleConfig mha_config;
  mha_config.variant = Variant::kMha;
  mha_config.d_model = o.d_model;
  mha_config.num_heads = o.heads;
  mha_config.bias = HasBiases(state_dict);
  ATTN_RETURN_IF_ERROR(ValidateConfig(mha_config));
  std::unique_ptr<AttentionModule> mha;
  if (o.weights_dir.empty()) {
    ATTN_ASSIGN_OR_RETURN(mha, AttentionModule::CreateRandom(mha_config, o.seed));
  } else {
    ATTN_ASSIGN_OR_RETURN(mha, AttentionModule::Create(mha_config, state_dict));
  }
  // MLA's source: the MHA layer without its biases.
  std::unique_ptr<AttentionModule> unbiased;
  if (mha_config.bias) {
    ModuleConfig c = mha_config;
    c.bias = false;
    std::erase_if(state_dict, [](const auto& entry) { return absl::EndsWith(entry.first, ".bias"); });
    ATTN_ASSIGN_OR_RETURN(unbiased, AttentionModule::Create(c, std::move(state_dict)));
  }
  const int64_t mla_rank = o.mla_rank > 0 ? o.mla_rank : std::max<int64_t>(1, o.d_model / 8);
  const int64_t mla_rope =
      o.mla_rope > 0 ? o.mla_rope : std::max<int64_t>(1, o.d_model / o.heads / 2);

  // Quality input and the MHA layer's own output on it.
  const Tensor xq = RandomInput({1, o.quality_len, o.d_model}, o.seed + 7);
  const Tensor calibration({o.quality_len, o.d_model}, xq.values());
  ForwardInput in;
  in.query = &xq;
  in.mask.causal = true;
  ATTN_ASSIGN_OR_RETURN(ForwardResult reference, mha->Forward(in));

  std::vector<std::pair<std::string, DerivedModule>> variants;
  variants.push_back({absl::StrCat("MHA (", o.heads, " kv heads)"),
                      DerivedModule{mha_config, mha->weights()}});
  for (int64_t kv : o.gqa_kv_heads) {
    if (kv <= 1 || kv >= o.heads) continue;
    ATTN_ASSIGN_OR_RETURN(DerivedModule g, PoolKvHeads(*mha, kv));
    variants.push_back({absl::StrCat("GQA (", kv, " kv heads)"), std::move(g)});
  }
  ATTN_ASSIGN_OR_RETURN(DerivedModule mqa, PoolKvHeads(*mha, 1));
  variants.push_back({"MQA (1 kv head)", std::move(mqa)});
  ATTN_ASSIGN_OR_RETURN(DerivedModule mla, LowRankMla(unbiased ? *unbiased : *mha, mla_rank,
                                                      mla_rope, calibration, o.seed));
  variants.push_back({absl::StrCat("MLA (latent ", mla_rank, "+", mla_rope, ")"), std::move(mla)});

  std::vector<CompareRow> rows;
  for (auto& [label, derived] : variants) {
    CompareRow row;
    row.variant = label;
    row.config = derived.config;
    row.parameters = ParameterCount(derived.config);
    row.kv_bytes_per_token = KvCacheBytesPerToken(derived.config);
    ATTN_ASSIGN_OR_RETURN(std::unique_ptr<AttentionModule> m,
                          AttentionModule::Create(derived.config, std::move(derived.weights)));
    ATTN_ASSIGN_OR_RETURN(ForwardResult y, m->Forward(in));
    row.relative_error = FrobeniusRelError(y.output, reference.output);
    m.reset();
    ATTN_RETURN_IF_ERROR(MeasureLatency(client, o, row));
    rows.push_back(std::move(row));
  }
  return rows;
}

absl::StatusOr<WeightMap> ReadStateDict(const std::string& dir) {
  WeightMap weights;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string file = entry.path().filename().string();
    if (file.size() < 5 || file.substr(file.size() - 4) != ".npy") continue;
    ATTN_ASSIGN_OR_RETURN(Tensor t, ReadNpyAsFloat(entry.path().string()));
    weights.emplace(file.substr(0, file.size() - 4), std::move(t));
  }
  if (ec) return absl::NotFoundError(absl::StrCat("weights_dir: ", dir, ": ", ec.message()));
  return weights;
}

std::string CompareMarkdown(const CompareOptions& o, const std::vector<CompareRow>& rows) {
  std::string out = absl::StrFormat(
      "Variant comparison at d_model %d, %d query heads (d_head %d), batch %d, sequence %d.\n"
      "Latency through the server (prefill: one causal Forward; decode: one token per row "
      "after %d cached, median of %d). Relative error: ‖y − y_MHA‖/‖y_MHA‖ of the layer "
      "derived from the MHA layer%s on %d tokens.\n\n",
      o.d_model, o.heads, o.d_model / o.heads, o.batch, o.seq, o.seq, o.decode_steps,
      o.weights_dir.empty() ? " (random weights: a pessimistic proxy)" : "", o.quality_len);
  if (!rows.empty() && rows[0].config.bias) {
    absl::StrAppend(&out,
                    "The state_dict has biases; MLA has none, so it is derived from the weights "
                    "without them and its error includes theirs.\n\n");
  }
  if (!rows.empty() && rows.back().parameters > rows[0].parameters) {
    absl::StrAppendFormat(&out,
                          "Note: at d_model %d the MLA ranks (latent %d, rope %d) give the MLA "
                          "layer more parameters than the MHA one; smaller ranks compress.\n\n",
                          o.d_model, rows.back().config.kv_lora_rank,
                          rows.back().config.qk_rope_head_dim);
  }
  absl::StrAppend(&out,
                  "| variant | parameters | KV bytes/token | KV cache at seq | prefill ms | "
                  "decode ms/token | rel. error vs MHA |\n|---|---:|---:|---:|---:|---:|---:|\n");
  const double mha_kv = rows.empty() ? 1 : static_cast<double>(rows[0].kv_bytes_per_token);
  for (const CompareRow& r : rows) {
    absl::StrAppendFormat(&out, "| %s | %d | %d (%.1f%%) | %.1f MiB | %.1f | %.2f | %.4f |\n",
                          r.variant, r.parameters, r.kv_bytes_per_token,
                          100.0 * r.kv_bytes_per_token / mha_kv,
                          static_cast<double>(r.kv_bytes_per_token) * o.batch * o.seq / 1048576.0,
                          r.prefill_ms, r.decode_ms, r.relative_error);
  }
  return out;
}

std::string CompareSvg(const CompareOptions& o, const std::vector<CompareRow>& rows) {
  const int label_w = 190, bar_w = 260, panel_gap = 30, row_h = 26, top = 60;
  const int panels = 3;
  const int width = label_w + panels * (bar_w + panel_gap) + 20;
  const int height = top + static_cast<int>(rows.size()) * row_h + 40;
  struct Panel {
    const char* title;
    std::function<double(const CompareRow&)> value;
    const char* format;
    const char* color;
  };
  const Panel kPanels[3] = {
      {"KV cache bytes / token", [](const CompareRow& r) { return double(r.kv_bytes_per_token); },
       "%.0f", "#4e79a7"},
      {"decode ms / token", [](const CompareRow& r) { return r.decode_ms; }, "%.2f", "#f28e2b"},
      {"relative error vs MHA", [](const CompareRow& r) { return r.relative_error; }, "%.3f",
       "#e15759"},
  };
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" "
      "fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">Attention "
      "variants at d_model %d, %d heads, seq %d (measured)</text>\n",
      width, height, o.d_model, o.heads, o.seq);
  for (size_t i = 0; i < rows.size(); ++i) {
    absl::StrAppendFormat(&svg, "<text x=\"10\" y=\"%d\">%s</text>\n",
                          top + static_cast<int>(i) * row_h + 17, rows[i].variant);
  }
  for (int p = 0; p < panels; ++p) {
    const Panel& panel = kPanels[p];
    const int x0 = label_w + p * (bar_w + panel_gap);
    double max = 0;
    for (const CompareRow& r : rows) max = std::max(max, panel.value(r));
    absl::StrAppendFormat(&svg, "<text x=\"%d\" y=\"%d\" font-weight=\"bold\">%s</text>\n", x0,
                          top - 10, panel.title);
    for (size_t i = 0; i < rows.size(); ++i) {
      const double v = panel.value(rows[i]);
      const int w = max > 0 ? static_cast<int>(std::round((bar_w - 60) * v / max)) : 0;
      const int y = top + static_cast<int>(i) * row_h + 4;
      absl::StrAppendFormat(&svg,
                            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"/>\n",
                            x0, y, std::max(w, 1), row_h - 8, panel.color);
      char value[32];
      std::snprintf(value, sizeof(value), panel.format, v);
      absl::StrAppendFormat(&svg, "<text x=\"%d\" y=\"%d\">%s</text>\n",
                            x0 + std::max(w, 1) + 4, y + 13, value);
    }
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace attention::client
