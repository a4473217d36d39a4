// attention_cli: call attention.v1 from the command line.
//
//   attention_cli COMMAND [--target=127.0.0.1:50051] [flags]
//   attention_cli help [COMMAND]
//
// The commands and the flags each reads are in client/cli_commands.cc.
// Masks: --causal, --key_lengths=3,5, --keep=mask.npy. Wire dtypes: --dtype
// (f32|f16|bf16) for inputs, --output_dtype for results.
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "client/attention_client.h"
#include "client/cli_commands.h"
#include "client/cli_output.h"
#include "client/compare.h"
#include "client/compare_model.h"
#include "core/npy.h"
#include "core/safetensors.h"
#include "core/status_macros.h"
#include "flags/help.h"
#include "wire/convert.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051",
          "server address (host:port, dns:///name:port, or a comma list)");
ABSL_FLAG(double, timeout_s, 0, "per-call deadline in seconds (0: none)");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA file to trust: connect with TLS");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate file (mutual TLS)");
ABSL_FLAG(std::string, tls_key, "", "PEM client key file (mutual TLS)");
ABSL_FLAG(std::string, tls_server_name, "", "name to check the server certificate against");
ABSL_FLAG(std::string, token, "", "bearer token (or @FILE to read it from a file)");
// Shapes for random inputs.
ABSL_FLAG(int64_t, b, 1, "batch rows B");
ABSL_FLAG(int64_t, hq, 8, "query heads Hq (attend)");
ABSL_FLAG(int64_t, hkv, 2, "key/value heads Hkv (attend)");
ABSL_FLAG(int64_t, lq, 16, "queries Lq (decode: tokens to stream)");
ABSL_FLAG(int64_t, lk, 0, "keys Lk (0: Lq; forward: a cross-attention memory of Lk tokens)");
ABSL_FLAG(int64_t, dk, 64, "query/key width Dk (attend)");
ABSL_FLAG(int64_t, dv, 64, "value width Dv (attend)");
ABSL_FLAG(uint64_t, seed, 1, "seed for random inputs and random module weights");
// Inputs and outputs as .npy.
ABSL_FLAG(std::string, q, "", "attend: query .npy [B, Hq, Lq, Dk], float (with --k and --v)");
ABSL_FLAG(std::string, k, "", "attend: key .npy [B, Hkv, Lk, Dk], float (with --q and --v)");
ABSL_FLAG(std::string, v, "", "attend: value .npy [B, Hkv, Lk, Dv], float (with --q and --k)");
ABSL_FLAG(std::string, query, "", "forward: query .npy [B, Lq, d_model], float");
ABSL_FLAG(std::string, key, "", "forward: key .npy [B, Lk, d_model], float");
ABSL_FLAG(std::string, value, "", "forward: value .npy [B, Lk, d_model], float");
ABSL_FLAG(std::string, out, "", "write the output here (.npy)");
ABSL_FLAG(std::string, weights_out, "", "also ask for the attention weights and write them (.npy)");
// Masks and options.
ABSL_FLAG(bool, causal, false, "causal mask (bottom-right aligned)");
ABSL_FLAG(std::string, key_lengths, "", "comma list, one per batch row");
ABSL_FLAG(std::string, keep, "",
          "keep-mask .npy broadcastable to [B, H, Lq, Lk]: bool, int or float, nonzero keeps");
ABSL_FLAG(double, scale, 0, "attend: score scale (0: 1/sqrt(Dk))");
ABSL_FLAG(int64_t, sliding_window, 0,
          "attend, forward: mask sliding window of W keys, query at position p sees p-W+1..p "
          "(0: none); load, estimate: the layer's window (mha, gqa, mqa)");
ABSL_FLAG(double, logit_softcap, 0,
          "attend; load, estimate (mha, gqa, mqa): logit soft-cap c, s <- c*tanh(s/c) (0: none)");
ABSL_FLAG(std::string, sinks, "",
          "attend: learned attention sinks, a comma list of Hq logits (empty: none)");
ABSL_FLAG(bool, return_lse, false, "attend: also ask for and print each row's log-sum-exp");
ABSL_FLAG(std::string, dtype, "f32", "wire dtype of inputs: f32, f16 or bf16");
ABSL_FLAG(std::string, output_dtype, "",
          "wire dtype of outputs: f32, f16, bf16 (default: as inputs)");
// Modules.
ABSL_FLAG(std::string, module, "demo-gqa", "forward: module name");
ABSL_FLAG(std::string, name, "", "load/unload: module name");
ABSL_FLAG(std::string, variant, "gqa", "self_attention, mha, gqa, mqa or mla");
ABSL_FLAG(int64_t, d_model, 512, "layer width");
ABSL_FLAG(bool, bias, true, "linear biases (not mla)");
ABSL_FLAG(int64_t, heads, 8, "query heads (mha, gqa, mqa, mla)");
ABSL_FLAG(int64_t, kv_heads, 2, "gqa key/value heads");
ABSL_FLAG(int64_t, d_k, 64, "self_attention d_k");
ABSL_FLAG(int64_t, d_v, 64, "self_attention d_v");
ABSL_FLAG(int64_t, q_lora_rank, 0, "mla query compression rank (0: none)");
ABSL_FLAG(int64_t, kv_lora_rank, 128, "mla latent rank");
ABSL_FLAG(int64_t, qk_nope_head_dim, 32, "mla");
ABSL_FLAG(int64_t, qk_rope_head_dim, 16, "mla");
ABSL_FLAG(int64_t, v_head_dim, 32, "mla");
ABSL_FLAG(double, rope_theta, 0, "RoPE base of mla, and of --rope (0: 10000)");
ABSL_FLAG(std::string, rope, "none",
          "mha, gqa, mqa: rotary embeddings of q and k, none, neox (rotate-half) or gptj");
ABSL_FLAG(int64_t, rotary_dim, 0, "--rope: rotated dims of each head (0: all)");
ABSL_FLAG(int64_t, head_dim, 0,
          "load, estimate: mha, gqa, mqa: the width of each head (0: d_model / heads)");
ABSL_FLAG(bool, attention_sinks, false,
          "load, estimate: mha, gqa, mqa: learned attention sinks (weight 'sinks' [heads])");
ABSL_FLAG(bool, rope_interleave, false,
          "load, estimate: mla: the checkpoint's rope rows are in interleaved-pair order "
          "(Hugging Face DeepSeek-V2/V3)");
ABSL_FLAG(std::string, compute_dtype, "",
          "load, estimate, attend: precision of the matrix products, f32 or bf16 (default f32)");
ABSL_FLAG(std::string, kv_cache_dtype, "",
          "load, estimate: the module's KV cache, f32, bf16, f16 or int8 (default f32); decode: "
          "the stream's (default: the module's)");
ABSL_FLAG(std::string, weights_dir, "", "load: directory of NAME.npy state_dict files");
ABSL_FLAG(std::string, safetensors, "",
          "load: a local .safetensors checkpoint whose tensors (those under --prefix) are sent");
ABSL_FLAG(std::string, file, "",
          "load: a .safetensors file the server reads, relative to its --model_dir");
ABSL_FLAG(std::string, prefix, "",
          "load: weights_prefix, the layer's name prefix in the checkpoint, e.g. "
          "model.layers.7.self_attn.");
ABSL_FLAG(bool, replace, false, "load: replace a module of the same name");
ABSL_FLAG(int64_t, batch, 1, "estimate: batch");
ABSL_FLAG(int64_t, seq_len, 4096, "estimate: sequence length");
ABSL_FLAG(int64_t, chunk, 1, "decode: tokens per chunk");
ABSL_FLAG(int64_t, seq, 4096, "compare: prefill length and decode context");
ABSL_FLAG(std::string, gqa_kv_heads, "8,4", "compare: GQA kv-head counts");
ABSL_FLAG(int64_t, mla_rank, 0, "compare: MLA kv_lora_rank (0: d_model / 8)");
ABSL_FLAG(int64_t, mla_rope, 0, "compare: MLA qk_rope_head_dim (0: d_head / 2)");
ABSL_FLAG(int64_t, decode_steps, 8, "compare: timed decode steps per variant");
ABSL_FLAG(int64_t, quality_len, 256, "compare: tokens of the quality input");
ABSL_FLAG(std::string, svg, "", "compare: write the chart here");
ABSL_FLAG(std::string, model, "",
          "compare: a BERT sentence encoder's directory (config.json, vocab.txt, "
          "model.safetensors): derive the variants from its trained layers and measure them on "
          "the whole model");
ABSL_FLAG(std::string, sentences, "",
          "compare --model: a file of sentences, one per line (default: a built-in set of 32)");

namespace attention::client {
namespace {

// A dtype flag: "" is UNSPECIFIED; int8 only where `int8` (KV caches).
absl::StatusOr<pb::DType> DTypeFlag(const std::string& s, absl::string_view flag, bool int8) {
  if (s.empty()) return pb::DTYPE_UNSPECIFIED;
  if (int8 && (s == "int8" || s == "i8")) return pb::DTYPE_INT8;
  absl::StatusOr<DType> d = wire::ParseDType(s, flag);
  if (!d.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expected f32, bf16", int8 ? ", f16 or int8" : "", ", got '", s, "'"));
  }
  if (!int8 && *d == DType::kFloat16) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": expected f32 or bf16, got '", s, "'"));
  }
  return wire::ToProtoDType(*d);
}

absl::StatusOr<pb::DType> OutputDType() {
  const std::string s = absl::GetFlag(FLAGS_output_dtype);
  if (s.empty()) return pb::DTYPE_UNSPECIFIED;
  ATTN_ASSIGN_OR_RETURN(DType d, wire::ParseDType(s, "--output_dtype"));
  return wire::ToProtoDType(d);
}

Tensor Random(std::vector<int64_t> shape, uint64_t seed) {
  Tensor t(std::move(shape));
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float& x : t.values()) x = dist(gen);
  return t;
}

// A tensor input: floating-point .npy only (an int or bool array is almost
// always the wrong file: ReadNpyAsFloat would convert it silently).
absl::StatusOr<Tensor> ReadFloatNpy(absl::string_view flag, const std::string& path) {
  ATTN_ASSIGN_OR_RETURN(NpyArray raw, ReadNpy(path));
  if (raw.descr.size() < 2 || raw.descr[1] != 'f') {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": ", path, " holds '", raw.descr,
                     "' elements; inputs must be float16, float32 or float64 .npy"));
  }
  return ReadNpyAsFloat(path);
}

absl::StatusOr<Tensor> InputOr(absl::string_view flag, const std::string& path,
                               std::vector<int64_t> shape, uint64_t seed) {
  if (path.empty()) return Random(std::move(shape), seed);
  return ReadFloatNpy(flag, path);
}

// Refuses the flags of `names` that were set: they would be ignored because
// `reason`.
absl::Status RefuseSetFlags(const std::vector<std::string>& names, absl::string_view reason) {
  std::vector<std::string> set;
  for (const std::string& name : names) {
    if (flags::FlagChanged(name)) set.push_back(absl::StrCat("--", name));
  }
  if (set.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(absl::StrJoin(set, ", "), ": not used ", reason, "; leave unset"));
}

// Checks a message of `elements` values of `bytes_per_element` against the
// client's message limit before anything is built; `flag_names` name the
// shape.
absl::Status CheckMessageSize(absl::string_view what, absl::string_view flag_names, double elements,
                              int64_t bytes_per_element, int64_t limit) {
  const double bytes = elements * static_cast<double>(bytes_per_element);
  if (bytes <= static_cast<double>(limit)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s: the %s would carry %.1f MiB of tensors, over the client's message limit of %.0f MiB",
      flag_names, what, bytes / 1048576.0, limit / 1048576.0));
}

// A comma list of numbers ("0.5,-1,2"); empty: none.
absl::StatusOr<std::vector<float>> FloatList(const std::string& s, absl::string_view flag) {
  std::vector<float> out;
  if (s.empty()) return out;
  for (absl::string_view part : absl::StrSplit(s, ',')) {
    float x = 0;
    if (!absl::SimpleAtof(absl::StripAsciiWhitespace(part), &x)) {
      return absl::InvalidArgumentError(absl::StrCat(flag, ": bad number '", part, "'"));
    }
    out.push_back(x);
  }
  return out;
}

absl::StatusOr<MaskSpec> MaskFromFlags() {
  MaskSpec mask;
  mask.causal = absl::GetFlag(FLAGS_causal);
  mask.sliding_window = absl::GetFlag(FLAGS_sliding_window);
  const std::string lengths = absl::GetFlag(FLAGS_key_lengths);
  if (!lengths.empty()) {
    for (absl::string_view s : absl::StrSplit(lengths, ',')) {
      int64_t v = 0;
      if (!absl::SimpleAtoi(s, &v)) {
        return absl::InvalidArgumentError(absl::StrCat("--key_lengths: bad number '", s, "'"));
      }
      mask.key_lengths.push_back(v);
    }
  }
  const std::string keep = absl::GetFlag(FLAGS_keep);
  if (!keep.empty()) {
    ATTN_ASSIGN_OR_RETURN(Tensor t, ReadNpyAsFloat(keep));
    mask.keep_shape = t.shape();
    for (float x : t.values()) mask.keep.push_back(x != 0.0f);
  }
  return mask;
}

absl::Status WriteOutputs(const Tensor& output, const Tensor& weights) {
  if (!absl::GetFlag(FLAGS_out).empty()) {
    ATTN_RETURN_IF_ERROR(WriteNpy(absl::GetFlag(FLAGS_out), output));
    std::printf("wrote %s\n", absl::GetFlag(FLAGS_out).c_str());
  }
  if (!absl::GetFlag(FLAGS_weights_out).empty()) {
    ATTN_RETURN_IF_ERROR(WriteNpy(absl::GetFlag(FLAGS_weights_out), weights));
    std::printf("wrote %s\n", absl::GetFlag(FLAGS_weights_out).c_str());
  }
  return absl::OkStatus();
}

absl::StatusOr<pb::ModuleConfig> ConfigFromFlags() {
  ModuleConfig c;
  const std::string v = absl::GetFlag(FLAGS_variant);
  c.d_model = absl::GetFlag(FLAGS_d_model);
  c.bias = absl::GetFlag(FLAGS_bias);
  c.num_heads = absl::GetFlag(FLAGS_heads);
  if (v == "self_attention" || v == "sa") {
    c.variant = Variant::kSelfAttention;
    c.d_k = absl::GetFlag(FLAGS_d_k);
    c.d_v = absl::GetFlag(FLAGS_d_v);
  } else if (v == "mha") {
    c.variant = Variant::kMha;
  } else if (v == "gqa") {
    c.variant = Variant::kGqa;
    c.num_kv_heads = absl::GetFlag(FLAGS_kv_heads);
  } else if (v == "mqa") {
    c.variant = Variant::kMqa;
  } else if (v == "mla") {
    c.variant = Variant::kMla;
    c.q_lora_rank = absl::GetFlag(FLAGS_q_lora_rank);
    c.kv_lora_rank = absl::GetFlag(FLAGS_kv_lora_rank);
    c.qk_nope_head_dim = absl::GetFlag(FLAGS_qk_nope_head_dim);
    c.qk_rope_head_dim = absl::GetFlag(FLAGS_qk_rope_head_dim);
    c.v_head_dim = absl::GetFlag(FLAGS_v_head_dim);
    c.rope_theta = absl::GetFlag(FLAGS_rope_theta);
    c.mla_rope_interleave = absl::GetFlag(FLAGS_rope_interleave);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--variant: expected self_attention, mha, gqa, mqa or mla, got '", v, "'"));
  }
  const std::string rope = absl::GetFlag(FLAGS_rope);
  if (rope == "neox" || rope == "gptj") {
    c.rope.style = rope == "neox" ? RopeStyle::kNeox : RopeStyle::kGptj;
    c.rope.theta = absl::GetFlag(FLAGS_rope_theta);
    c.rope.rotary_dim = absl::GetFlag(FLAGS_rotary_dim);
  } else if (rope != "none") {
    return absl::InvalidArgumentError(
        absl::StrCat("--rope: expected none, neox or gptj, got '", rope, "'"));
  }
  if (c.variant != Variant::kMla && absl::GetFlag(FLAGS_rope_interleave)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rope_interleave: only for --variant=mla, got '", v, "'"));
  }
  c.head_dim = absl::GetFlag(FLAGS_head_dim);
  c.sliding_window = absl::GetFlag(FLAGS_sliding_window);
  c.logit_softcap = absl::GetFlag(FLAGS_logit_softcap);
  c.attention_sinks = absl::GetFlag(FLAGS_attention_sinks);
  pb::ModuleConfig config = ConfigToProto(c);
  ATTN_ASSIGN_OR_RETURN(pb::DType compute,
                        DTypeFlag(absl::GetFlag(FLAGS_compute_dtype), "--compute_dtype", false));
  ATTN_ASSIGN_OR_RETURN(pb::DType kv,
                        DTypeFlag(absl::GetFlag(FLAGS_kv_cache_dtype), "--kv_cache_dtype", true));
  config.set_compute_dtype(compute);
  config.set_kv_cache_dtype(kv);
  return config;
}

absl::Status TlsAndTokenFromFlags(ClientOptions& options) {
  for (auto [flag, out] : {std::pair{absl::GetFlag(FLAGS_tls_ca), &options.tls_ca_pem},
                           std::pair{absl::GetFlag(FLAGS_tls_cert), &options.tls_cert_pem},
                           std::pair{absl::GetFlag(FLAGS_tls_key), &options.tls_key_pem}}) {
    if (!flag.empty()) {
      ATTN_ASSIGN_OR_RETURN(*out, ReadFileToString(flag));
    }
  }
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  std::string token = absl::GetFlag(FLAGS_token);
  if (!token.empty() && token[0] == '@') {
    ATTN_ASSIGN_OR_RETURN(token, ReadFileToString(token.substr(1)));
    token = std::string(absl::StripAsciiWhitespace(token));
  }
  options.token = token;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> GqaKvHeads() {
  std::vector<int64_t> out;
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_gqa_kv_heads), ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v)) {
      return absl::InvalidArgumentError(absl::StrCat("--gqa_kv_heads: bad number '", part, "'"));
    }
    out.push_back(v);
  }
  return out;
}

// compare --model: the shape comes from the model, so the shape flags of
// the random-weight comparison are refused.
absl::Status CompareModel(AttentionClient& client) {
  ATTN_RETURN_IF_ERROR(RefuseSetFlags(
      {"d_model", "heads", "seq", "b", "quality_len", "weights_dir", "svg"},
      "with --model (the model gives the shapes and weights)"));
  CompareModelOptions o;
  o.model_dir = absl::GetFlag(FLAGS_model);
  if (!absl::GetFlag(FLAGS_sentences).empty()) {
    ATTN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(absl::GetFlag(FLAGS_sentences)));
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (!line.empty()) o.sentences.emplace_back(line);
    }
    if (o.sentences.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--sentences: no sentence in ", absl::GetFlag(FLAGS_sentences)));
    }
  }
  // Unset: every divisor of the model's heads (compare's default suits 32).
  if (flags::FlagChanged("gqa_kv_heads")) {
    ATTN_ASSIGN_OR_RETURN(o.gqa_kv_heads, GqaKvHeads());
  }
  o.mla_rank = absl::GetFlag(FLAGS_mla_rank);
  o.mla_rope = absl::GetFlag(FLAGS_mla_rope);
  o.decode_steps = absl::GetFlag(FLAGS_decode_steps);
  o.seed = absl::GetFlag(FLAGS_seed);
  ATTN_ASSIGN_OR_RETURN(CompareModelResult result, RunCompareModel(client, o));
  std::printf("%s", CompareModelMarkdown(result).c_str());
  return absl::OkStatus();
}

absl::Status Run(const std::string& command) {
  if (std::none_of(CliCommands().begin(), CliCommands().end(),
                   [&](const CliCommand& c) { return command == c.name; })) {
    return CliHelp(command, {}).status();  // names the commands
  }
  ClientOptions options;
  if (absl::GetFlag(FLAGS_timeout_s) > 0) {
    options.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout_s));
  }
  ATTN_RETURN_IF_ERROR(TlsAndTokenFromFlags(options));
  ATTN_ASSIGN_OR_RETURN(auto client,
                        AttentionClient::Connect(absl::GetFlag(FLAGS_target), options));
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const int64_t b = absl::GetFlag(FLAGS_b), lq = absl::GetFlag(FLAGS_lq);
  const int64_t lk = absl::GetFlag(FLAGS_lk) > 0 ? absl::GetFlag(FLAGS_lk) : lq;

  if (command == "info") {
    ATTN_ASSIGN_OR_RETURN(pb::ServerInfo info, client->GetServerInfo());
    ATTN_ASSIGN_OR_RETURN(auto modules, client->ListModules());
    PrintServerInfo(info, modules);
    return absl::OkStatus();
  }
  if (command == "health") {
    ATTN_ASSIGN_OR_RETURN(int status, client->CheckHealth());
    static const char* kNames[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
    std::printf("%s\n", status >= 0 && status <= 3 ? kNames[status] : "UNKNOWN");
    return status == 1 ? absl::OkStatus() : absl::UnavailableError("not serving");
  }
  if (command == "list") {
    ATTN_ASSIGN_OR_RETURN(auto modules, client->ListModules());
    for (const auto& m : modules) PrintModule(m);
    return absl::OkStatus();
  }
  if ((command == "load" || command == "unload") && absl::GetFlag(FLAGS_name).empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--name: ", command, " needs a module name"));
  }
  if (command == "unload") {
    return client->UnloadModule(absl::GetFlag(FLAGS_name));
  }
  if (command == "load") {
    ATTN_ASSIGN_OR_RETURN(pb::ModuleConfig config, ConfigFromFlags());
    const std::string weights_dir = absl::GetFlag(FLAGS_weights_dir);
    const std::string local = absl::GetFlag(FLAGS_safetensors);
    const std::string file = absl::GetFlag(FLAGS_file);
    if (!weights_dir.empty() + !local.empty() + !file.empty() > 1) {
      return absl::InvalidArgumentError(
          "--weights_dir, --safetensors, --file: give at most one source of weights");
    }
    pb::LoadModuleRequest req;
    req.set_name(absl::GetFlag(FLAGS_name));
    *req.mutable_config() = config;
    req.set_random_seed(seed);
    req.set_replace(absl::GetFlag(FLAGS_replace));
    // The server strips the prefix and maps Hugging Face's names.
    req.set_weights_prefix(absl::GetFlag(FLAGS_prefix));
    req.set_file(file);
    WeightMap weights;
    if (!weights_dir.empty()) {
      ATTN_ASSIGN_OR_RETURN(weights, ReadStateDict(weights_dir));
    } else if (!local.empty()) {
      absl::StatusOr<TensorMap> read = ReadSafetensors(local, 0, absl::GetFlag(FLAGS_prefix));
      if (!read.ok()) {
        return absl::Status(read.status().code(),
                            absl::StrCat("--safetensors: ", read.status().message()));
      }
      weights = *std::move(read);
      if (weights.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--prefix: no tensor of ", local, " starts with '", absl::GetFlag(FLAGS_prefix), "'"));
      }
    }
    for (const auto& [n, t] : weights) {
      client::TensorToProto(t, DType::kFloat32, &(*req.mutable_weights())[n]);
    }
    ATTN_ASSIGN_OR_RETURN(pb::ModuleInfo info, client->LoadModule(req));
    PrintModule(info);
    return absl::OkStatus();
  }
  if (command == "estimate") {
    ATTN_ASSIGN_OR_RETURN(pb::ModuleConfig config, ConfigFromFlags());
    ATTN_ASSIGN_OR_RETURN(
        pb::EstimateResponse e,
        client->Estimate(config, absl::GetFlag(FLAGS_batch), absl::GetFlag(FLAGS_seq_len)));
    std::printf("parameters:               %lld\n", static_cast<long long>(e.parameters()));
    std::printf("kv_cache_bytes_per_token: %lld\n",
                static_cast<long long>(e.kv_cache_bytes_per_token()));
    std::printf("kv_cache_bytes:           %lld (%.1f MiB)\n",
                static_cast<long long>(e.kv_cache_bytes()), e.kv_cache_bytes() / 1048576.0);
    std::printf("prefill_flops:            %.6g\n", e.prefill_flops());
    std::printf("decode_flops_per_token:   %.6g\n", e.decode_flops_per_token());
    return absl::OkStatus();
  }
  if (command == "compare" && !absl::GetFlag(FLAGS_model).empty()) return CompareModel(*client);
  if (command == "compare") {
    if (!absl::GetFlag(FLAGS_sentences).empty()) {
      return absl::InvalidArgumentError("--sentences: only with --model");
    }
    CompareOptions o;
    o.d_model = absl::GetFlag(FLAGS_d_model);
    o.heads = absl::GetFlag(FLAGS_heads);
    o.seq = absl::GetFlag(FLAGS_seq);
    o.batch = b;
    ATTN_ASSIGN_OR_RETURN(o.gqa_kv_heads, GqaKvHeads());
    o.mla_rank = absl::GetFlag(FLAGS_mla_rank);
    o.mla_rope = absl::GetFlag(FLAGS_mla_rope);
    o.decode_steps = absl::GetFlag(FLAGS_decode_steps);
    o.quality_len = absl::GetFlag(FLAGS_quality_len);
    o.seed = seed;
    o.weights_dir = absl::GetFlag(FLAGS_weights_dir);
    ATTN_ASSIGN_OR_RETURN(std::vector<CompareRow> rows, RunCompare(*client, o));
    std::printf("%s", CompareMarkdown(o, rows).c_str());
    if (!absl::GetFlag(FLAGS_svg).empty()) {
      FILE* f = std::fopen(absl::GetFlag(FLAGS_svg).c_str(), "w");
      if (f == nullptr)
        return absl::NotFoundError(absl::StrCat("--svg: cannot write ", absl::GetFlag(FLAGS_svg)));
      const std::string svg = CompareSvg(o, rows);
      std::fwrite(svg.data(), 1, svg.size(), f);
      std::fclose(f);
      std::printf("\nwrote %s\n", absl::GetFlag(FLAGS_svg).c_str());
    }
    return absl::OkStatus();
  }
  if (command == "decode") {
    for (auto [flag, value] : {std::pair{"--b", b}, std::pair{"--lq", lq},
                               std::pair{"--chunk", absl::GetFlag(FLAGS_chunk)}}) {
      if (value <= 0) {
        return absl::InvalidArgumentError(absl::StrCat(flag, ": must be at least 1, got ", value));
      }
    }
    ATTN_ASSIGN_OR_RETURN(auto modules, client->ListModules());
    int64_t d_model = 0;
    for (const auto& m : modules) {
      if (m.name() == absl::GetFlag(FLAGS_module)) d_model = m.config().d_model();
    }
    if (d_model == 0) {
      return absl::NotFoundError(
          absl::StrCat("--module: no module named '", absl::GetFlag(FLAGS_module), "' is loaded"));
    }
    ATTN_ASSIGN_OR_RETURN(pb::DType kv,
                          DTypeFlag(absl::GetFlag(FLAGS_kv_cache_dtype), "--kv_cache_dtype", true));
    ATTN_ASSIGN_OR_RETURN(auto stream, client->StartDecode(absl::GetFlag(FLAGS_module), b, 0, kv));
    const int64_t chunk = absl::GetFlag(FLAGS_chunk);
    ATTN_RETURN_IF_ERROR(CheckMessageSize("chunk [B, chunk, d_model]", "--b, --chunk",
                                          static_cast<double>(b) * chunk * d_model, 4,
                                          options.max_message_bytes));
    for (int64_t t = 0; t < lq; t += chunk) {
      const int64_t n = std::min(chunk, lq - t);
      ATTN_ASSIGN_OR_RETURN(DecodeChunk c, stream->Step(Random({b, n, d_model}, seed + t)));
      std::printf("chunk %lld: %lld tokens, cached %lld, kv_cache_bytes %lld, compute %lld us\n",
                  static_cast<long long>(t / chunk), static_cast<long long>(n),
                  static_cast<long long>(c.cached_tokens), static_cast<long long>(c.kv_cache_bytes),
                  static_cast<long long>(c.timing.compute_us));
    }
    return stream->Close();
  }
  ATTN_ASSIGN_OR_RETURN(DType wire_dtype, wire::ParseDType(absl::GetFlag(FLAGS_dtype), "--dtype"));
  ATTN_ASSIGN_OR_RETURN(pb::DType out_dtype, OutputDType());
  ATTN_ASSIGN_OR_RETURN(MaskSpec mask, MaskFromFlags());
  const bool want_weights = !absl::GetFlag(FLAGS_weights_out).empty();
  if (command == "attend") {
    const int64_t hq = absl::GetFlag(FLAGS_hq), hkv = absl::GetFlag(FLAGS_hkv);
    const int64_t dk = absl::GetFlag(FLAGS_dk), dv = absl::GetFlag(FLAGS_dv);
    const std::string q_path = absl::GetFlag(FLAGS_q), k_path = absl::GetFlag(FLAGS_k),
                      v_path = absl::GetFlag(FLAGS_v);
    const int files = !q_path.empty() + !k_path.empty() + !v_path.empty();
    if (files != 0 && files != 3) {
      return absl::InvalidArgumentError(
          "--q, --k, --v: give all three .npy files, or none for random inputs of the shape "
          "flags");
    }
    if (files == 3) {
      ATTN_RETURN_IF_ERROR(RefuseSetFlags({"b", "hq", "hkv", "lq", "lk", "dk", "dv", "seed"},
                                          "with --q/--k/--v (the files give the shapes)"));
    } else {
      const double in =
          static_cast<double>(b) * hq * lq * dk + static_cast<double>(b) * hkv * lk * (dk + dv);
      ATTN_RETURN_IF_ERROR(CheckMessageSize("request (q, k, v)",
                                            "--b, --hq, --hkv, --lq, --lk, --dk, --dv", in,
                                            DTypeSize(wire_dtype), options.max_message_bytes));
      const double out = static_cast<double>(b) * hq * lq * (dv + (want_weights ? lk : 0));
      ATTN_RETURN_IF_ERROR(CheckMessageSize(
          want_weights ? "response (output and weights)" : "response (output)",
          "--b, --hq, --lq, --dv, --lk", out,
          DTypeSize(out_dtype == pb::DTYPE_UNSPECIFIED ? wire_dtype : wire::ToCoreDType(out_dtype)),
          options.max_message_bytes));
    }
    ATTN_ASSIGN_OR_RETURN(Tensor q, InputOr("q", q_path, {b, hq, lq, dk}, seed));
    ATTN_ASSIGN_OR_RETURN(Tensor k, InputOr("k", k_path, {b, hkv, lk, dk}, seed + 1));
    ATTN_ASSIGN_OR_RETURN(Tensor v, InputOr("v", v_path, {b, hkv, lk, dv}, seed + 2));
    AttendOptions o;
    o.mask = std::move(mask);
    o.scale = static_cast<float>(absl::GetFlag(FLAGS_scale));
    o.return_weights = want_weights;
    o.wire_dtype = wire_dtype;
    o.output_dtype = out_dtype;
    ATTN_ASSIGN_OR_RETURN(o.compute_dtype,
                          DTypeFlag(absl::GetFlag(FLAGS_compute_dtype), "--compute_dtype", false));
    o.logit_softcap = static_cast<float>(absl::GetFlag(FLAGS_logit_softcap));
    ATTN_ASSIGN_OR_RETURN(o.sinks, FloatList(absl::GetFlag(FLAGS_sinks), "--sinks"));
    o.return_lse = absl::GetFlag(FLAGS_return_lse);
    ATTN_ASSIGN_OR_RETURN(AttendResult r, client->Attend(q, k, v, o));
    std::printf("variant: %s\n", r.variant.c_str());
    PrintTensor("output", r.output, r.output_dtype);
    if (o.return_lse) PrintTensor("lse", r.lse, pb::DTYPE_FLOAT32);
    PrintTiming(r.timing);
    return WriteOutputs(r.output, r.weights);
  }
  if (command == "forward") {
    ATTN_ASSIGN_OR_RETURN(auto modules, client->ListModules());
    int64_t d_model = 0;
    for (const auto& m : modules) {
      if (m.name() == absl::GetFlag(FLAGS_module)) d_model = m.config().d_model();
    }
    const std::string query_path = absl::GetFlag(FLAGS_query);
    if (d_model == 0 && query_path.empty()) {
      return absl::NotFoundError(
          absl::StrCat("--module: no module named '", absl::GetFlag(FLAGS_module), "' is loaded"));
    }
    if (!query_path.empty()) {
      ATTN_RETURN_IF_ERROR(
          RefuseSetFlags({"b", "lq", "seed"}, "with --query (the file gives the shape)"));
    } else {
      ATTN_RETURN_IF_ERROR(CheckMessageSize("request (query)", "--b, --lq",
                                            static_cast<double>(b) * lq * d_model,
                                            DTypeSize(wire_dtype), options.max_message_bytes));
    }
    ATTN_ASSIGN_OR_RETURN(Tensor query, InputOr("query", query_path, {b, lq, d_model}, seed));
    Tensor key, value;
    ForwardOptions o;
    if (!absl::GetFlag(FLAGS_key).empty() || absl::GetFlag(FLAGS_lk) > 0) {
      ATTN_ASSIGN_OR_RETURN(key,
                            InputOr("key", absl::GetFlag(FLAGS_key), {b, lk, d_model}, seed + 1));
      o.key = &key;
    }
    if (!absl::GetFlag(FLAGS_value).empty()) {
      ATTN_ASSIGN_OR_RETURN(value, ReadFloatNpy("value", absl::GetFlag(FLAGS_value)));
      o.value = &value;
    }
    o.mask = std::move(mask);
    o.return_weights = want_weights;
    o.wire_dtype = wire_dtype;
    o.output_dtype = out_dtype;
    ATTN_ASSIGN_OR_RETURN(ForwardOutput r, client->Forward(absl::GetFlag(FLAGS_module), query, o));
    PrintTensor("output", r.output, r.output_dtype);
    PrintTiming(r.timing);
    return WriteOutputs(r.output, r.weights);
  }
  return absl::UnimplementedError(absl::StrCat("command '", command, "' has no handler"));
}

}  // namespace
}  // namespace attention::client

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "attention_cli COMMAND [flags]; attention_cli help lists the commands and their flags.");
  const bool help_flag = attention::flags::TakeHelpFlags(argc, argv);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const bool help_command = args.size() >= 2 && std::string(args[1]) == "help";
  if (help_flag || help_command) {
    const size_t at = help_command ? 2 : 1;
    if (args.size() > at + 1) {
      std::fprintf(stderr, "%s\n", absl::ProgramUsageMessage().data());
      return 2;
    }
    const absl::StatusOr<std::string> text = attention::client::CliHelp(
        args.size() > at ? args[at] : "", attention::flags::FlagsDefinedIn(__FILE__));
    if (!text.ok()) {
      std::fprintf(stderr, "attention_cli: %s\n", std::string(text.status().message()).c_str());
      return 2;
    }
    std::fputs(text->c_str(), stdout);
    return 0;
  }
  if (args.size() != 2) {
    std::fprintf(stderr, "%s\n", absl::ProgramUsageMessage().data());
    return 2;
  }
  const absl::Status s = attention::client::Run(args[1]);
  if (!s.ok()) {
    std::fprintf(stderr, "attention_cli: %s: %s\n", absl::StatusCodeToString(s.code()).c_str(),
                 std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
