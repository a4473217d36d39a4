#include "client/cli_commands.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "flags/help.h"

namespace attention::client {
namespace {

constexpr char kUsage[] =
    "attention_cli COMMAND [flags]\n"
    "attention_cli help [COMMAND]   (or attention_cli [COMMAND] --help)";

const std::vector<std::string>& ModuleConfigFlags() {
  static const auto* flags = new std::vector<std::string>{"variant",
                                                          "d_model",
                                                          "bias",
                                                          "heads",
                                                          "kv_heads",
                                                          "d_k",
                                                          "d_v",
                                                          "q_lora_rank",
                                                          "kv_lora_rank",
                                                          "qk_nope_head_dim",
                                                          "qk_rope_head_dim",
                                                          "v_head_dim",
                                                          "rope_theta",
                                                          "rope",
                                                          "rotary_dim",
                                                          "compute_dtype",
                                                          "kv_cache_dtype",
                                                          "head_dim",
                                                          "sliding_window",
                                                          "logit_softcap",
                                                          "attention_sinks",
                                                          "rope_interleave"};
  return *flags;
}

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

const std::vector<std::string>& ConnectionFlags() {
  static const auto* flags = new std::vector<std::string>{
      "target", "timeout_s", "tls_ca", "tls_cert", "tls_key", "tls_server_name", "token"};
  return *flags;
}

const std::vector<CliCommand>& CliCommands() {
  static const auto* commands = new std::vector<CliCommand>{
      {"info",
       "The server's version, oneDNN and ISA, variants, modules, limits, load and KV cache.",
       {}},
      {"health", "grpc.health.v1 status; exits 0 when SERVING.", {}},
      {"list", "The loaded modules.", {}},
      {"load",
       "Registers a module --name of --variant and its config flags; weights from --weights_dir "
       "(one NAME.npy per state_dict entry, float), a local --safetensors checkpoint, a --file "
       "the server reads under its --model_dir (both with the layer's --prefix; Hugging Face "
       "names q_proj... are accepted), or random from --seed.",
       Concat({"name", "weights_dir", "safetensors", "file", "prefix", "seed", "replace"},
              ModuleConfigFlags())},
      {"unload", "Removes module --name.", {"name"}},
      {"attend",
       "SDPA over heads: random inputs of --b --hq --hkv --lq --lk --dk --dv, or all three of "
       "--q --k --v as float .npy files (then the shape flags must stay unset); --out writes the "
       "output. --sliding_window, --logit_softcap and --sinks (Hq logits) add those terms; "
       "--return_lse prints each row's log-sum-exp.",
       {"b",     "hq",           "hkv",           "lq",   "lk",
        "dk",    "dv",           "seed",          "q",    "k",
        "v",     "causal",       "key_lengths",   "keep", "scale",
        "dtype", "output_dtype", "compute_dtype", "out",  "weights_out",
        "sliding_window", "logit_softcap", "sinks", "return_lse"}},
      {"forward",
       "A whole layer: --module on a random [--b, --lq, d_model] input or --query (and --key, "
       "--value) float .npy files; --out writes the output.",
       {"module", "b", "lq", "lk", "seed", "query", "key", "value", "causal", "key_lengths", "keep",
        "sliding_window", "dtype", "output_dtype", "out", "weights_out"}},
      {"estimate", "Parameters, KV bytes and FLOPs of a config at --batch and --seq_len.",
       Concat({"batch", "seq_len"}, ModuleConfigFlags())},
      {"decode",
       "Streams --lq random tokens through --module in chunks of --chunk.",
       {"module", "b", "lq", "chunk", "seed", "kv_cache_dtype"}},
      {"compare",
       "The variant comparison at --d_model/--heads/--seq: parameters, KV bytes, measured "
       "prefill and decode latency, quality proxy; a Markdown table on stdout and --svg FILE. "
       "With --model DIR (a BERT sentence encoder such as all-MiniLM-L6-v2): GQA, MQA and MLA "
       "layers derived from each trained layer, the whole model run over --sentences with its "
       "attention served by each variant, and the embeddings' cosine against the original.",
       {"d_model", "heads", "seq", "b", "gqa_kv_heads", "mla_rank", "mla_rope", "decode_steps",
        "quality_len", "seed", "weights_dir", "svg", "model", "sentences"}},
  };
  return *commands;
}

absl::StatusOr<std::string> CliHelp(absl::string_view command,
                                    const std::vector<std::string>& all_flags) {
  std::vector<std::string> names;
  for (const CliCommand& c : CliCommands()) names.push_back(c.name);
  if (command.empty()) {
    std::string usage = absl::StrCat(kUsage, "\n\nCommands:\n");
    for (const CliCommand& c : CliCommands()) {
      absl::StrAppend(&usage, "  ", c.name, "\n", flags::WrapText(c.summary));
    }
    absl::StrAppend(&usage, "\nFlags (attention_cli help COMMAND lists those of one command):");
    return flags::HelpText(usage, all_flags);
  }
  for (const CliCommand& c : CliCommands()) {
    if (command != c.name) continue;
    std::string text = absl::StrCat("attention_cli ", c.name, " [flags]\n\n", c.summary, "\n");
    if (!c.flags.empty()) text = flags::HelpText(absl::StrCat(text, "\nFlags:"), c.flags);
    return flags::HelpText(absl::StrCat(text, "\nConnection flags:"), ConnectionFlags());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown command '", command, "' (expected ", absl::StrJoin(names, ", "), ")"));
}

}  // namespace attention::client
