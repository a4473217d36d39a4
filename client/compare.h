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
  int64_t mla_rank = 512;                // kv_lora_rank
  int64_t mla_rope = 64;                 // qk_rope_head_dim
  int64_t decode_steps = 8;              // timed single-token steps
  int64_t quality_len = 256;             // tokens of the quality input
  uint64_t seed = 1;
  std::string weights_dir;               // optional MHA state_dict (NAME.npy); else random
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

absl::StatusOr<std::vector<CompareRow>> RunCompare(AttentionClient& client,
                                                   const CompareOptions& options);

std::string CompareMarkdown(const CompareOptions& options, const std::vector<CompareRow>& rows);
// A self-contained SVG: three bar panels (KV bytes/token, decode ms/token,
// relative error) over the variants.
std::string CompareSvg(const CompareOptions& options, const std::vector<CompareRow>& rows);

}  // namespace attention::client

#endif  // ATTENTION_CLIENT_COMPARE_H_
