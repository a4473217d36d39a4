// The variant comparison of the reference designs, made of measurements:
// for MHA, GQA (several group counts), MQA and MLA at one d_model, the
// parameters, KV bytes per token, prefill and per-token decode latency
// through the server, and a quality proxy: the relative output error of the
// layer derived from the MHA layer (pooled K/V heads for GQA/MQA, low-rank
// K/V for MLA; see core/variant_convert.h) against the MHA layer's output.
#ifndef ATTENTION_CLIENT_COMPARE_H_
#define ATTENTION_CLIENT_COMPARE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/attention_client.h"
#include "core/module.h"

namespace attention::client {

struct CompareOptions {
  int64_t d_model = 4096;
  int64_t heads = 32;
  int64_t seq = 4096;                    // prefill length and decode context
  int64_t batch = 1;
  std::vector<int64_t> gqa_kv_heads = {8, 4};
  int64_t mla_rank = 0;                  // kv_lora_rank (0: d_model / 8)
  int64_t mla_rope = 0;                  // qk_rope_head_dim (0: d_head / 2)
  int64_t decode_steps = 8;              // timed single-token steps
  int64_t quality_len = 256;             // tokens of the quality input
  uint64_t seed = 1;
  // Optional MHA state_dict (NAME.npy per entry, with or without biases);
  // else random weights without biases.
  std::string weights_dir;
};

struct CompareRow {
  std::string variant;  // e.g. "GQA (8 kv heads)"
  ModuleConfig config;
  int64_t parameters = 0;
  int64_t kv_bytes_per_token = 0;
  double prefill_ms = 0;         // one Forward of [batch, seq, d_model], causal, wall time
  double decode_ms = 0;          // per step of one token per row after seq cached (median)
  double relative_error = 0;     // ‖y − y_mha‖ / ‖y_mha‖ on the quality input
};

// The rows in order MHA, GQA (each of gqa_kv_heads between 1 and heads),
// MQA, MLA. MLA has no biases: from a state_dict with biases it is derived
// from the weights without them, and its error counts what they did.
// Errors: INVALID_ARGUMENT (a bad config or state_dict), NOT_FOUND
// (weights_dir), and the server's.
absl::StatusOr<std::vector<CompareRow>> RunCompare(AttentionClient& client,
                                                   const CompareOptions& options);

// The state_dict in `dir`: one entry per NAME.npy file (NAME e.g.
// "W_q.weight"), as float32. Errors: NOT_FOUND naming weights_dir,
// INVALID_ARGUMENT for a malformed file.
absl::StatusOr<WeightMap> ReadStateDict(const std::string& dir);

// The table, after a paragraph on the setup; notes when the state_dict had
// biases and when the MLA layer has more parameters than the MHA one (ranks
// too large for d_model).
std::string CompareMarkdown(const CompareOptions& options, const std::vector<CompareRow>& rows);
// A self-contained SVG: three bar panels (KV bytes/token, decode ms/token,
// relative error) over the variants.
std::string CompareSvg(const CompareOptions& options, const std::vector<CompareRow>& rows);

}  // namespace attention::client

#endif  // ATTENTION_CLIENT_COMPARE_H_
