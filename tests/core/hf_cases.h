// The recorded Hugging Face layers of tests/golden/hf (manifest.txt and one
// .safetensors per case; tests/golden/hf/README.md) as our ModuleConfigs:
// shared by the core's golden test and the server's.
#ifndef ATTENTION_TESTS_CORE_HF_CASES_H_
#define ATTENTION_TESTS_CORE_HF_CASES_H_

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.h"

namespace attention {

struct HfCase {
  std::string name;
  std::map<std::string, std::string> kv;

  const std::string& Str(const std::string& k) const { return kv.at(k); }
  int64_t Int(const std::string& k) const { return std::stoll(kv.at(k)); }
  double Double(const std::string& k) const { return std::stod(kv.at(k)); }
  std::string Path() const { return std::string(ATTN_HF_GOLDEN_DIR) + "/" + name + ".safetensors"; }
};

inline void PrintTo(const HfCase& c, std::ostream* os) { *os << c.name; }

inline std::vector<HfCase> LoadCases() {
  std::vector<HfCase> cases;
  std::ifstream in(std::string(ATTN_HF_GOLDEN_DIR) + "/manifest.txt");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    HfCase c;
    words >> c.name;
    std::string word;
    while (words >> word) {
      const size_t eq = word.find('=');
      c.kv[word.substr(0, eq)] = word.substr(eq + 1);
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

// The case's rope_* keys (tests/golden/hf/README.md).
inline RopeScaling ScalingOf(const HfCase& c) {
  RopeScaling s;
  const std::string& type = c.Str("rope_scaling");
  s.type = type == "linear"   ? RopeScalingType::kLinear
           : type == "llama3" ? RopeScalingType::kLlama3
           : type == "yarn"   ? RopeScalingType::kYarn
                              : RopeScalingType::kNone;
  s.factor = c.Double("rope_factor");
  s.original_max_position = c.Int("rope_original_max");
  s.low_freq_factor = c.Double("rope_low_freq_factor");
  s.high_freq_factor = c.Double("rope_high_freq_factor");
  s.beta_fast = c.Double("rope_beta_fast");
  s.beta_slow = c.Double("rope_beta_slow");
  s.mscale = c.Double("rope_mscale");
  s.mscale_all_dim = c.Double("rope_mscale_all_dim");
  s.truncate = c.Int("rope_truncate") != 0;
  // attention_factor stays 0: derived from mscale as HF does (the manifest's
  // rope_attention_factor is what that gives).
  return s;
}

// Our ModuleConfig of the recorded layer.
inline ModuleConfig ConfigOf(const HfCase& c) {
  ModuleConfig m;
  m.d_model = c.Int("d_model");
  const std::string& variant = c.Str("variant");
  if (variant == "mla") {
    m.variant = Variant::kMla;
    m.num_heads = c.Int("num_heads");
    m.q_lora_rank = c.Int("q_lora_rank");
    m.kv_lora_rank = c.Int("kv_lora_rank");
    m.qk_nope_head_dim = c.Int("qk_nope_head_dim");
    m.qk_rope_head_dim = c.Int("qk_rope_head_dim");
    m.v_head_dim = c.Int("v_head_dim");
    m.rope_theta = c.Double("rope_theta");
    m.mla_rope_interleave = c.Int("rope_interleave") != 0;
    m.mla_rope_scaling = ScalingOf(c);
    m.bias = false;
    return m;
  }
  m.variant = variant == "mha" ? Variant::kMha : variant == "gqa" ? Variant::kGqa : Variant::kMqa;
  m.num_heads = c.Int("num_q_heads");
  if (m.variant == Variant::kGqa) m.num_kv_heads = c.Int("num_kv_heads");
  m.head_dim = c.Int("head_dim");  // Gemma 2, Qwen3, gpt-oss: heads · head_dim != d_model
  m.bias = c.Int("bias") != 0;
  m.output_bias = c.Int("output_bias") != 0;
  m.rope.style = c.Str("rope") == "gptj" ? RopeStyle::kGptj : RopeStyle::kNeox;
  m.rope.theta = c.Double("rope_theta");
  m.rope.rotary_dim = c.Int("rotary_dim");
  m.rope.scaling = ScalingOf(c);
  m.qk_norm = c.Int("qk_norm") != 0;
  m.norm_eps = c.Double("norm_eps");
  m.scale = c.Double("scale");
  m.sliding_window = c.Int("sliding_window");
  m.logit_softcap = c.Double("logit_softcap");
  m.attention_sinks = c.Int("attention_sinks") != 0;
  return m;
}

}  // namespace attention

#endif  // ATTENTION_TESTS_CORE_HF_CASES_H_
