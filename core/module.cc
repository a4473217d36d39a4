#include "core/module.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/dtype.h"
#include "core/internal/gemm.h"
#include "core/internal/latent_attention.h"
#include "core/internal/projected_attention.h"
#include "core/status_macros.h"

namespace attention {
namespace {

// Maps accepted aliases to canonical state_dict names (w_q.weight -> W_q.weight
// for the multi-head variants).
std::string CanonicalName(const ModuleConfig& c, const std::string& name) {
  if (c.variant == Variant::kMha || c.variant == Variant::kGqa || c.variant == Variant::kMqa) {
    for (const char* p : {"w_q.", "w_k.", "w_v.", "w_o."}) {
      if (absl::StartsWith(name, p)) return "W" + name.substr(1);
    }
  }
  return name;
}

// Deterministic generator: SplitMix64.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1).
  float Symmetric() {
    return static_cast<float>(static_cast<double>(Next() >> 40) * 0x1p-23 - 1.0);
  }

 private:
  uint64_t state_;
};

uint64_t NameHash(const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char ch : name) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

std::unique_ptr<AttentionModule> MakeModule(const ModuleConfig& config, WeightMap weights) {
  if (config.variant == Variant::kMla) {
    return internal::MakeLatentAttention(config, std::move(weights));
  }
  return internal::MakeProjectedAttention(config, std::move(weights));
}

}  // namespace

AttentionModule::AttentionModule(ModuleConfig config, WeightMap weights)
    : config_(config), weights_(std::move(weights)) {
  if (config_.compute_dtype != DType::kBfloat16) return;
  for (auto it = weights_.begin(); it != weights_.end();) {
    if (it->second.rank() != 2) {
      ++it;
      continue;
    }
    Bf16Matrix m{it->second.shape(), std::vector<uint16_t>(it->second.size())};
    FloatToBfloat16(it->second.data(), m.values.data(), it->second.size());
    bf16_.emplace(it->first, std::move(m));
    it = weights_.erase(it);
  }
}

WeightMap AttentionModule::weights() const {
  WeightMap out = weights_;
  for (const auto& [name, m] : bf16_) {
    Tensor t(m.shape);
    Bfloat16ToFloat(m.values.data(), t.data(), t.size());
    out.emplace(name, std::move(t));
  }
  return out;
}

int64_t AttentionModule::parameter_bytes() const {
  int64_t bytes = 0;
  for (const auto& [name, t] : weights_) bytes += 4 * t.size();
  for (const auto& [name, m] : bf16_) bytes += 2 * static_cast<int64_t>(m.values.size());
  return bytes;
}

internal::WeightRef AttentionModule::Matrix(const std::string& name) const {
  auto it = bf16_.find(name);
  if (it != bf16_.end()) return {nullptr, it->second.values.data()};
  return {weights_.at(name).data(), nullptr};
}

namespace {

// config.mla_rope_interleave: the rope rows of the query and k_rope
// projections from interleaved pairs into evens then odds, the order
// rotate-half RoPE pairs (i with i + dr/2). Scores are unchanged: q_rope and
// k_rope are permuted alike.
void DeinterleaveRopeRows(const ModuleConfig& c, WeightMap& weights) {
  const int64_t dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim;
  // Rows [row0, row0 + dr) of a [rows, cols] matrix.
  auto reorder = [dr](Tensor& w, int64_t row0) {
    const int64_t cols = w.dim(1);
    std::vector<float> rows(w.data() + row0 * cols, w.data() + (row0 + dr) * cols);
    for (int64_t i = 0; i < dr; ++i) {
      const int64_t from = i < dr / 2 ? 2 * i : 2 * (i - dr / 2) + 1;
      std::copy_n(rows.data() + from * cols, cols, w.data() + (row0 + i) * cols);
    }
  };
  Tensor& q = weights.at(c.q_lora_rank == 0 ? "q_proj.weight" : "q_b_proj.weight");
  for (int64_t h = 0; h < c.num_heads; ++h) reorder(q, h * (dn + dr) + dn);
  reorder(weights.at("kv_a_proj_with_mqa.weight"), c.kv_lora_rank);
}

}  // namespace

absl::StatusOr<std::unique_ptr<AttentionModule>> AttentionModule::Create(const ModuleConfig& config,
                                                                         WeightMap weights) {
  ATTN_RETURN_IF_ERROR(ValidateConfig(config));
  const std::vector<WeightSpec> specs = ExpectedWeights(config);
  std::vector<std::string> expected_names;
  for (const WeightSpec& s : specs) expected_names.push_back(s.name);
  WeightMap canonical;
  for (auto& [name, tensor] : weights) {
    const std::string canon = CanonicalName(config, name);
    bool known = false;
    for (const WeightSpec& s : specs) known = known || s.name == canon;
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(
          "weights: unexpected tensor '", name, "' for ", VariantFieldName(config.variant),
          config.variant != Variant::kMla && !config.bias && absl::EndsWith(name, ".bias")
              ? " with config.bias = false"
              : "",
          " (expected: ", absl::StrJoin(expected_names, ", "), ")"));
    }
    if (canonical.count(canon) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("weights: '", name, "' given twice (as '", canon, "' and an alias)"));
    }
    canonical.emplace(canon, std::move(tensor));
  }
  for (const WeightSpec& s : specs) {
    auto it = canonical.find(s.name);
    if (it == canonical.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "weights: missing tensor '", s.name, "' (expected shape ", ShapeString(s.shape), ")"));
    }
    if (it->second.shape() != s.shape) {
      return absl::InvalidArgumentError(absl::StrCat("weights['", s.name, "']: expected shape ",
                                                     ShapeString(s.shape), ", got ",
                                                     ShapeString(it->second.shape())));
    }
    if (it->second.size() != NumElements(s.shape)) {
      return absl::InvalidArgumentError(
          absl::StrCat("weights['", s.name, "']: shape ", ShapeString(s.shape), " needs ",
                       NumElements(s.shape), " values, got ", it->second.size()));
    }
  }
  if (config.variant == Variant::kMla && config.mla_rope_interleave) {
    DeinterleaveRopeRows(config, canonical);
  }
  return MakeModule(config, std::move(canonical));
}

absl::StatusOr<std::unique_ptr<AttentionModule>> AttentionModule::CreateRandom(
    const ModuleConfig& config, uint64_t seed) {
  ATTN_RETURN_IF_ERROR(ValidateConfig(config));
  WeightMap weights;
  for (const WeightSpec& s : ExpectedWeights(config)) {
    Tensor t(s.shape);
    if (absl::StrContains(s.name, "layernorm") || absl::StrContains(s.name, "_norm.")) {
      std::fill(t.values().begin(), t.values().end(), 1.0f);
    } else if (s.name == "sinks") {
      std::fill(t.values().begin(), t.values().end(), 0.0f);
    } else {
      // nn.Linear: U(-1/sqrt(in_features), 1/sqrt(in_features)) for both.
      const int64_t fan_in =
          s.shape.size() == 2 ? s.shape[1]
                              : weights.at(s.name.substr(0, s.name.size() - 5) + ".weight").dim(1);
      const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
      Rng rng(seed ^ NameHash(s.name));
      for (float& x : t.values()) x = bound * rng.Symmetric();
    }
    weights.emplace(s.name, std::move(t));
  }
  return MakeModule(config, std::move(weights));
}

}  // namespace attention
