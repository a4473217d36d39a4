// A BERT encoder with mean-pooled, L2-normalised sentence embeddings (the
// sentence-transformers layout of e.g. all-MiniLM-L6-v2), run from a
// Hugging Face model directory, with each layer's self-attention supplied by
// a callback: computed locally by core's AttentionModule, or served by a
// module loaded on attention_server (examples/minilm_served.py is the same
// computation in Python).
//
// Per sentence: WordPiece ids (client/wordpiece.h, at most 512 or
// max_position_embeddings tokens), then
//   h = LayerNorm(word[ids] + position[0..L) + token_type[0])
//   per layer i:  h = LayerNorm(h + Attention_i(h))         (key lengths mask padding)
//                 h = LayerNorm(h + W2 · GELU(W1 · h + b1) + b2)   (erf GELU)
//   embedding = normalise(mean of h over the sentence's tokens)
// Attention_i is an mha layer (ModuleConfig from AttentionConfig()) with
// the checkpoint's query/key/value/attention.output.dense weights and biases
// as W_q/W_k/W_v/W_o (AttentionWeights(i)).
//
// Shapes (B sentences, L the longest one's tokens, D = hidden_size):
//   hidden     [B, L, D]   the attention's input, rows >= lengths[b] padding
//   attention  [B, L, D]   the callback's output (padding rows ignored)
//   embeddings [B, D]
//
// Thread-safety: const methods may be called concurrently.
#ifndef ATTENTION_CLIENT_ENCODER_MODEL_H_
#define ATTENTION_CLIENT_ENCODER_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/wordpiece.h"
#include "core/module.h"

namespace attention::client {

// config.json's fields that the computation uses.
struct EncoderConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;  // D
  int64_t num_heads = 0;
  int64_t num_layers = 0;
  int64_t intermediate_size = 0;
  int64_t max_positions = 0;
  double layer_norm_eps = 1e-12;
};

// Token ids of a batch of sentences, right-padded with 0 to the longest.
struct TokenBatch {
  int64_t batch = 0;                // B
  int64_t length = 0;               // L
  std::vector<int64_t> ids;         // [B, L]
  std::vector<int64_t> lengths;     // [B] real tokens, [CLS] and [SEP] included
  int64_t tokens() const;           // sum of lengths
};

// The attention output [B, L, D] of layer `layer` for `hidden` [B, L, D];
// `lengths` [B] are the key lengths (keys at positions >= lengths[b] are
// padding and must get no weight).
using LayerAttention = std::function<absl::StatusOr<Tensor>(
    int64_t layer, const Tensor& hidden, const std::vector<int64_t>& lengths)>;

class EncoderModel {
 public:
  // Reads DIR/config.json, DIR/vocab.txt and DIR/model.safetensors (BERT
  // names without a "bert." prefix: embeddings.*, encoder.layer.N.*; other
  // tensors, such as int64 embeddings.position_ids, are not read).
  // NOT_FOUND for a missing file; INVALID_ARGUMENT for a config that is not
  // a BERT encoder's (hidden_act other than gelu, hidden_size not divisible
  // by num_attention_heads) or a missing or mis-shaped tensor, naming it.
  static absl::StatusOr<std::unique_ptr<EncoderModel>> Load(const std::string& dir);

  const EncoderConfig& config() const { return config_; }
  const WordPieceTokenizer& tokenizer() const { return tokenizer_; }

  // Encodes every sentence (truncated to max_positions tokens).
  TokenBatch Tokenize(const std::vector<std::string>& sentences) const;

  // The attention layers: mha, d_model D, num_heads, with biases.
  ModuleConfig AttentionConfig() const;
  // Layer `layer`'s (0 <= layer < num_layers) W_q, W_k, W_v, W_o weights
  // and biases.
  WeightMap AttentionWeights(int64_t layer) const;

  // The normalised sentence embeddings [B, D]. The callback's errors are
  // returned as they are; an output of another shape than [B, L, D] is
  // INTERNAL naming the layer.
  absl::StatusOr<Tensor> Embed(const TokenBatch& batch, const LayerAttention& attention) const;

 private:
  struct Layer {
    Tensor ln1_w, ln1_b;        // attention.output.LayerNorm
    Tensor w1t, b1;             // intermediate.dense, transposed to [D, I]
    Tensor w2t, b2;             // output.dense, transposed to [I, D]
    Tensor ln2_w, ln2_b;        // output.LayerNorm
  };
  EncoderModel(EncoderConfig config, WordPieceTokenizer tokenizer)
      : config_(config), tokenizer_(std::move(tokenizer)) {}

  EncoderConfig config_;
  WordPieceTokenizer tokenizer_;
  Tensor word_, position_, token_type_, emb_ln_w_, emb_ln_b_;
  std::vector<Layer> layers_;
  std::vector<WeightMap> attention_;  // per layer, W_q.weight ... W_o.bias
};

// A LayerAttention computed locally by `layers` (one per encoder layer,
// borrowed: they must outlive the callback).
LayerAttention LocalAttention(const std::vector<std::unique_ptr<AttentionModule>>& layers);

// The cosine of each row of `a` with the same row of `b` (both [B, D]).
std::vector<double> RowCosines(const Tensor& a, const Tensor& b);

}  // namespace attention::client

#endif  // ATTENTION_CLIENT_ENCODER_MODEL_H_
