// The variant comparison on a trained model (`attention_cli compare
// --model DIR`): from every attention layer of a BERT sentence encoder
// (client/encoder_model.h, e.g. all-MiniLM-L6-v2), derive GQA layers
// (mean-pooled K/V heads), an MQA layer and an MLA layer (low-rank K/V; see
// core/variant_convert.h), load each variant's layers into the server, run
// the whole model over a sentence set with its attention served by them, and
// measure: parameters and KV bytes per token of the attention (summed over
// the layers), the served attention latency, and the sentence embeddings'
// cosine against the original model (its unchanged MHA layers, computed
// locally by core).
//
// MLA has no biases. Of the layer's biases, the key bias only adds a
// constant to each query's scores (softmax ignores it), and the value and
// output biases add the constant W_o·b_v + b_o to every output row (the
// attention weights of a row sum to 1): the MLA variant adds that constant
// to its served output (d_model more parameters per layer, counted), so
// only the query bias is lost.
#ifndef ATTENTION_CLIENT_COMPARE_MODEL_H_
#define ATTENTION_CLIENT_COMPARE_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/attention_client.h"

namespace attention::client {

struct CompareModelOptions {
  std::string model_dir;               // config.json, vocab.txt, model.safetensors
  std::vector<std::string> sentences;  // empty: DefaultCompareSentences()
  // GQA kv-head counts; those that are not a divisor of the heads between 2
  // and heads - 1 are skipped (and named in the notes). Empty: every such
  // divisor up to heads / 2.
  std::vector<int64_t> gqa_kv_heads;
  int64_t mla_rank = 0;       // kv_lora_rank (0: d_model / 8)
  int64_t mla_rope = 0;       // qk_rope_head_dim (0: d_head / 2)
  int64_t timed_runs = 5;     // served forwards of the batch, median
  int64_t decode_steps = 8;   // timed single-token steps per layer, median
  int64_t decode_context = 128;  // tokens cached before them
  uint64_t seed = 1;          // MLA's randomized factorisation, decode inputs
};

struct CompareModelRow {
  std::string variant;             // e.g. "GQA (4 kv heads)"
  int64_t parameters = 0;          // attention parameters, all layers
  int64_t kv_bytes_per_token = 0;  // all layers, float32 cache
  double forward_ms = 0;   // the layers' served Forward of the whole batch, summed (median)
  double decode_ms = 0;    // one token per layer after decode_context cached, summed (medians)
  double min_cosine = 0;   // embedding cosine against the original model, over the sentences
  double mean_cosine = 0;
};

struct CompareModelResult {
  std::string model_dir;
  int64_t layers = 0, d_model = 0, heads = 0;
  int64_t sentences = 0, tokens = 0, padded_length = 0;  // B, sum of lengths, L
  int64_t timed_runs = 0, decode_steps = 0, decode_context = 0;
  std::vector<std::string> notes;  // skipped kv-head counts, MLA larger than MHA
  std::vector<CompareModelRow> rows;  // MHA, GQA (descending kv heads), MQA, MLA
};

// Runs the comparison through `client`'s server, loading modules named
// "compare-model-SEED-N-LAYER" (replacing any of those names) and unloading
// them, also on failure. Errors: NOT_FOUND or INVALID_ARGUMENT for the model
// directory (EncoderModel::Load), INVALID_ARGUMENT for no sentences or bad
// MLA ranks, and the server's.
absl::StatusOr<CompareModelResult> RunCompareModel(AttentionClient& client,
                                                   const CompareModelOptions& options);

// The built-in sentence set: 32 English sentences of 3 to 40 words on mixed
// topics, with paraphrase pairs, ASCII only.
const std::vector<std::string>& DefaultCompareSentences();

// A setup paragraph (model, layers, sentences, tokens, what each column
// measures), the notes, then the table in compare's Markdown style.
std::string CompareModelMarkdown(const CompareModelResult& result);

}  // namespace attention::client

#endif  // ATTENTION_CLIENT_COMPARE_MODEL_H_
