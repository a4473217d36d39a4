#include "client/compare_model.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <numeric>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/encoder_model.h"
#include "core/status_macros.h"
#include "core/variant_convert.h"

namespace attention::client {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// One variant: a derived layer per encoder layer, and for MLA the constant
// each layer's output gets (W_o·b_v + b_o; empty: none).
struct DerivedVariant {
  std::string label;
  std::vector<DerivedModule> layers;
  std::vector<std::vector<float>> output_bias;
};

// Unloads the modules it was given when it goes, whatever happened.
class LoadedModules {
 public:
  explicit LoadedModules(AttentionClient& client) : client_(client) {}
  ~LoadedModules() {
    for (const std::string& name : names_) client_.UnloadModule(name).IgnoreError();
  }
  LoadedModules(const LoadedModules&) = delete;
  LoadedModules& operator=(const LoadedModules&) = delete;

  absl::Status Load(const std::string& name, const DerivedModule& m) {
    ATTN_RETURN_IF_ERROR(
        client_.LoadModule(name, ConfigToProto(m.config), m.weights, 0, /*replace=*/true)
            .status());
    names_.push_back(name);
    return absl::OkStatus();
  }
  const std::vector<std::string>& names() const { return names_; }

 private:
  AttentionClient& client_;
  std::vector<std::string> names_;
};

// The real-token rows of each sentence of `hidden` [B, L, D]: [N, D].
Tensor RealRows(const Tensor& hidden, const std::vector<int64_t>& lengths) {
  const int64_t l = hidden.dim(1), d = hidden.dim(2);
  const int64_t n = std::accumulate(lengths.begin(), lengths.end(), int64_t{0});
  Tensor out({n, d});
  float* o = out.data();
  for (size_t b = 0; b < lengths.size(); ++b) {
    const float* src = hidden.data() + static_cast<int64_t>(b) * l * d;
    o = std::copy(src, src + lengths[b] * d, o);
  }
  return out;
}

// W_o·b_v + b_o of an mha state_dict.
std::vector<float> FoldedOutputBias(const WeightMap& w) {
  const Tensor& wo = w.at("W_o.weight");
  const Tensor& bv = w.at("W_v.bias");
  const Tensor& bo = w.at("W_o.bias");
  const int64_t d = wo.dim(0), in = wo.dim(1);
  std::vector<float> c(d);
  for (int64_t i = 0; i < d; ++i) {
    double s = bo.data()[i];
    for (int64_t k = 0; k < in; ++k) s += static_cast<double>(wo.data()[i * in + k]) * bv.data()[k];
    c[i] = static_cast<float>(s);
  }
  return c;
}

std::vector<int64_t> KvHeadCounts(const CompareModelOptions& o, int64_t heads,
                                  std::vector<std::string>& notes) {
  std::vector<int64_t> counts;
  if (o.gqa_kv_heads.empty()) {
    for (int64_t kv = heads / 2; kv >= 2; --kv) {
      if (heads % kv == 0) counts.push_back(kv);
    }
    return counts;
  }
  std::vector<std::string> skipped;
  for (int64_t kv : o.gqa_kv_heads) {
    if (kv > 1 && kv < heads && heads % kv == 0) {
      if (std::find(counts.begin(), counts.end(), kv) == counts.end()) counts.push_back(kv);
    } else {
      skipped.push_back(absl::StrCat(kv));
    }
  }
  std::sort(counts.rbegin(), counts.rend());
  if (!skipped.empty()) {
    notes.push_back(absl::StrCat("GQA kv-head counts ", absl::StrJoin(skipped, ", "),
                                 " skipped: GQA needs a divisor of the ", heads,
                                 " heads between 2 and ", heads - 1, "."));
  }
  return counts;
}

// The variants of every layer of `model`; `inputs[i]` holds layer i's input
// rows in the original model (MLA's calibration).
absl::StatusOr<std::vector<DerivedVariant>> DeriveVariants(const EncoderModel& model,
                                                    const std::vector<Tensor>& inputs,
                                                    const std::vector<int64_t>& kv_counts,
                                                    int64_t mla_rank, int64_t mla_rope,
                                                    uint64_t seed) {
  const ModuleConfig mha_config = model.AttentionConfig();
  const int64_t heads = mha_config.num_heads;
  std::vector<DerivedVariant> variants;
  variants.push_back({absl::StrCat("MHA (", heads, " kv heads)"), {}, {}});
  for (int64_t kv : kv_counts) variants.push_back({absl::StrCat("GQA (", kv, " kv heads)"), {}, {}});
  variants.push_back({"MQA (1 kv head)", {}, {}});
  variants.push_back({absl::StrCat("MLA (latent ", mla_rank, "+", mla_rope, ")"), {}, {}});
  for (int64_t layer = 0; layer < model.config().num_layers; ++layer) {
    WeightMap weights = model.AttentionWeights(layer);
    ATTN_ASSIGN_OR_RETURN(std::unique_ptr<AttentionModule> mha,
                          AttentionModule::Create(mha_config, weights));
    size_t v = 0;
    variants[v++].layers.push_back(DerivedModule{mha_config, weights});
    for (int64_t kv : kv_counts) {
      ATTN_ASSIGN_OR_RETURN(DerivedModule g, PoolKvHeads(*mha, kv));
      variants[v++].layers.push_back(std::move(g));
    }
    ATTN_ASSIGN_OR_RETURN(DerivedModule mqa, PoolKvHeads(*mha, 1));
    variants[v++].layers.push_back(std::move(mqa));
    // MLA from the weights without biases, plus the folded output constant.
    DerivedVariant& mla = variants[v];
    mla.output_bias.push_back(FoldedOutputBias(weights));
    std::erase_if(weights, [](const auto& e) { return e.first.ends_with(".bias"); });
    ModuleConfig unbiased_config = mha_config;
    unbiased_config.bias = false;
    ATTN_ASSIGN_OR_RETURN(std::unique_ptr<AttentionModule> unbiased,
                          AttentionModule::Create(unbiased_config, std::move(weights)));
    ATTN_ASSIGN_OR_RETURN(DerivedModule m,
                          LowRankMla(*unbiased, mla_rank, mla_rope, inputs[layer], seed));
    mla.layers.push_back(std::move(m));
  }
  return variants;
}

// Per layer: a decode stream of one row, decode_context random tokens
// cached, then decode_steps single tokens timed; the sum of the medians.
absl::StatusOr<double> DecodeMs(AttentionClient& client, const std::vector<std::string>& names,
                                int64_t d_model, const CompareModelOptions& o) {
  std::mt19937_64 gen(o.seed + 11);
  std::normal_distribution<float> normal;
  auto random = [&](int64_t tokens) {
    Tensor t({1, tokens, d_model});
    for (float& x : t.values()) x = normal(gen);
    return t;
  };
  double total = 0;
  for (const std::string& name : names) {
    ATTN_ASSIGN_OR_RETURN(std::unique_ptr<DecodeStream> stream, client.StartDecode(name, 1));
    ATTN_RETURN_IF_ERROR(stream->Step(random(o.decode_context)).status());
    std::vector<double> steps;
    for (int64_t i = 0; i < std::max<int64_t>(1, o.decode_steps); ++i) {
      const Tensor token = random(1);
      const auto start = Clock::now();
      ATTN_RETURN_IF_ERROR(stream->Step(token).status());
      steps.push_back(Ms(Clock::now() - start));
    }
    ATTN_RETURN_IF_ERROR(stream->Close());
    total += Median(std::move(steps));
  }
  return total;
}

absl::StatusOr<CompareModelRow> MeasureVariant(AttentionClient& client, const EncoderModel& model,
                                               const TokenBatch& batch, const Tensor& reference,
                                               const DerivedVariant& variant, size_t index,
                                               const CompareModelOptions& o) {
  CompareModelRow row;
  row.variant = variant.label;
  LoadedModules loaded(client);
  for (size_t layer = 0; layer < variant.layers.size(); ++layer) {
    const DerivedModule& m = variant.layers[layer];
    row.parameters += ParameterCount(m.config);
    if (!variant.output_bias.empty()) row.parameters += m.config.d_model;
    row.kv_bytes_per_token += KvCacheBytesPerToken(m.config);
    ATTN_RETURN_IF_ERROR(
        loaded.Load(absl::StrCat("compare-model-", o.seed, "-", index, "-", layer), m));
  }
  const std::vector<std::string>& names = loaded.names();
  ForwardOptions fo;
  fo.mask.key_lengths = batch.lengths;
  std::vector<Tensor> inputs(names.size());
  const LayerAttention served = [&](int64_t layer, const Tensor& hidden,
                                    const std::vector<int64_t>&) -> absl::StatusOr<Tensor> {
    inputs[layer] = hidden;
    ATTN_ASSIGN_OR_RETURN(ForwardOutput r, client.Forward(names[layer], hidden, fo));
    if (!variant.output_bias.empty()) {
      const std::vector<float>& c = variant.output_bias[layer];
      const int64_t d = static_cast<int64_t>(c.size());
      for (int64_t i = 0; i < r.output.size(); ++i) r.output.data()[i] += c[i % d];
    }
    return std::move(r.output);
  };
  ATTN_ASSIGN_OR_RETURN(Tensor embeddings, model.Embed(batch, served));
  const std::vector<double> cosines = RowCosines(embeddings, reference);
  row.min_cosine = *std::min_element(cosines.begin(), cosines.end());
  row.mean_cosine =
      std::accumulate(cosines.begin(), cosines.end(), 0.0) / static_cast<double>(cosines.size());
  // Latency: the same layer inputs again, attention only.
  std::vector<double> runs;
  for (int64_t run = 0; run < std::max<int64_t>(1, o.timed_runs); ++run) {
    const auto start = Clock::now();
    for (size_t layer = 0; layer < names.size(); ++layer) {
      ATTN_RETURN_IF_ERROR(client.Forward(names[layer], inputs[layer], fo).status());
    }
    runs.push_back(Ms(Clock::now() - start));
  }
  row.forward_ms = Median(std::move(runs));
  ATTN_ASSIGN_OR_RETURN(row.decode_ms, DecodeMs(client, names, model.config().hidden_size, o));
  return row;
}

}  // namespace

const std::vector<std::string>& DefaultCompareSentences() {
  static const auto* sentences = new std::vector<std::string>{
      "Hello world.",
      "The cat sits on the mat.",
      "A cat is sitting on a rug.",
      "A gRPC service computes the attention of every layer.",
      "The server runs the attention layers for its clients over the network.",
      "Stock markets fell sharply on Tuesday after the central bank raised interest rates again.",
      "Shares dropped steeply when the central bank increased rates once more.",
      "How do I reset my password if I no longer have access to my email account?",
      "I forgot my password and cannot get into my email; how can I recover the account?",
      "Photosynthesis converts light energy into chemical energy stored in glucose.",
      "Plants turn sunlight into sugar.",
      "She played the cello in the orchestra for twenty years, then opened a small music school "
      "in the village where she grew up, teaching children and adults alike.",
      "The train to the airport leaves every fifteen minutes from platform four.",
      "Trains for the airport depart from platform 4 four times an hour.",
      "He scored twice in the second half and his team won the final.",
      "The recipe needs two cups of flour, one egg and a pinch of salt.",
      "Mix the flour, the egg and the salt, then bake for twenty minutes.",
      "The museum is closed on Mondays.",
      "Quantum computers use qubits, which can be in a superposition of states.",
      "The committee postponed its decision until next month.",
      "A heavy storm knocked out power to thousands of homes overnight.",
      "Thousands of households lost electricity during the night because of the storm.",
      "My laptop battery drains quickly when I watch videos.",
      "The novel tells the story of three sisters growing up in a coastal town after the war.",
      "Please send me the report by Friday afternoon.",
      "The children built a sandcastle on the beach while their parents read.",
      "Regular exercise lowers the risk of heart disease.",
      "Walking every day is good for your heart.",
      "The company announced record profits and plans to hire five hundred engineers.",
      "Dogs are loyal animals.",
      "Where is the nearest pharmacy?",
      "The mountain road was closed for several days because of snow and falling rocks, so the "
      "villagers on the other side received food and medicine by helicopter.",
  };
  return *sentences;
}

absl::StatusOr<CompareModelResult> RunCompareModel(AttentionClient& client,
                                                   const CompareModelOptions& o) {
  const std::vector<std::string>& sentences =
      o.sentences.empty() ? DefaultCompareSentences() : o.sentences;
  ATTN_ASSIGN_OR_RETURN(std::unique_ptr<EncoderModel> model, EncoderModel::Load(o.model_dir));
  const EncoderConfig& c = model->config();
  const int64_t d_head = c.hidden_size / c.num_heads;
  const int64_t mla_rank = o.mla_rank > 0 ? o.mla_rank : std::max<int64_t>(1, c.hidden_size / 8);
  const int64_t mla_rope = o.mla_rope > 0 ? o.mla_rope : std::max<int64_t>(2, d_head / 2);

  CompareModelResult result;
  result.model_dir = o.model_dir;
  result.layers = c.num_layers;
  result.d_model = c.hidden_size;
  result.heads = c.num_heads;
  result.timed_runs = std::max<int64_t>(1, o.timed_runs);
  result.decode_steps = std::max<int64_t>(1, o.decode_steps);
  result.decode_context = o.decode_context;
  const TokenBatch batch = model->Tokenize(sentences);
  result.sentences = batch.batch;
  result.tokens = batch.tokens();
  result.padded_length = batch.length;
  const std::vector<int64_t> kv_counts = KvHeadCounts(o, c.num_heads, result.notes);

  // The original model, locally; each layer's input rows calibrate MLA.
  std::vector<std::unique_ptr<AttentionModule>> originals;
  for (int64_t layer = 0; layer < c.num_layers; ++layer) {
    ATTN_ASSIGN_OR_RETURN(originals.emplace_back(),
                          AttentionModule::Create(model->AttentionConfig(),
                                                  model->AttentionWeights(layer)));
  }
  std::vector<Tensor> calibration(c.num_layers);
  const LayerAttention local = LocalAttention(originals);
  ATTN_ASSIGN_OR_RETURN(
      Tensor reference,
      model->Embed(batch, [&](int64_t layer, const Tensor& hidden,
                              const std::vector<int64_t>& lengths) -> absl::StatusOr<Tensor> {
        calibration[layer] = RealRows(hidden, lengths);
        return local(layer, hidden, lengths);
      }));
  originals.clear();

  ATTN_ASSIGN_OR_RETURN(std::vector<DerivedVariant> variants,
                        DeriveVariants(*model, calibration, kv_counts, mla_rank, mla_rope, o.seed));
  for (size_t i = 0; i < variants.size(); ++i) {
    ATTN_ASSIGN_OR_RETURN(CompareModelRow row,
                          MeasureVariant(client, *model, batch, reference, variants[i], i, o));
    result.rows.push_back(std::move(row));
  }
  if (result.rows.back().parameters > result.rows.front().parameters) {
    result.notes.push_back(absl::StrCat("The MLA ranks (latent ", mla_rank, ", rope ", mla_rope,
                                        ") give MLA more parameters than MHA at d_model ",
                                        c.hidden_size, "; smaller ranks compress."));
  }
  return result;
}

std::string CompareModelMarkdown(const CompareModelResult& r) {
  std::string out = absl::StrFormat(
      "Variant comparison on the trained model %s: %d layers, d_model %d, %d query heads "
      "(d_head %d); %d sentences, %d tokens (batch [%d, %d] with padding).\n"
      "Every variant's layers are derived from the model's trained attention layers (GQA/MQA: "
      "mean-pooled K/V heads; MLA: low-rank K/V, its biases folded into an output constant "
      "except the query's) and served; the rest of the model runs in the client. Parameters and "
      "KV bytes/token: the attention of all %d layers (float32 cache). Forward ms: the %d "
      "layers' served Forward of the whole batch, summed, median of %d. Decode ms/token: one "
      "token per layer after %d cached, summed over the layers (median of %d steps each). "
      "Cosine: each sentence's embedding against the original model's (its MHA layers computed "
      "locally), min and mean over the sentences.\n\n",
      r.model_dir, r.layers, r.d_model, r.heads, r.heads > 0 ? r.d_model / r.heads : 0,
      r.sentences, r.tokens, r.sentences, r.padded_length, r.layers, r.layers, r.timed_runs,
      r.decode_context, r.decode_steps);
  for (const std::string& note : r.notes) absl::StrAppend(&out, "Note: ", note, "\n\n");
  absl::StrAppend(&out,
                  "| variant | parameters | KV bytes/token | forward ms | decode ms/token | "
                  "cosine min | cosine mean |\n|---|---:|---:|---:|---:|---:|---:|\n");
  const double mha_kv =
      r.rows.empty() ? 1 : static_cast<double>(std::max<int64_t>(1, r.rows[0].kv_bytes_per_token));
  for (const CompareModelRow& row : r.rows) {
    absl::StrAppendFormat(&out, "| %s | %d | %d (%.1f%%) | %.1f | %.2f | %.6f | %.6f |\n",
                          row.variant, row.parameters, row.kv_bytes_per_token,
                          100.0 * row.kv_bytes_per_token / mha_kv, row.forward_ms, row.decode_ms,
                          row.min_cosine, row.mean_cosine);
  }
  return out;
}

}  // namespace attention::client
