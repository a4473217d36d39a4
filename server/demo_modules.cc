#include "server/demo_modules.h"

#include "core/status_macros.h"
#include "wire/convert.h"

namespace attention::server {

using wire::ConfigToProto;

namespace {

struct Demo {
  const char* name;
  ModuleConfig config;
};

std::vector<Demo> Demos() {
  auto make = [](Variant v, int64_t d_model) {
    ModuleConfig c;
    c.variant = v;
    c.d_model = d_model;
    return c;
  };
  ModuleConfig sa = make(Variant::kSelfAttention, 128);
  sa.d_k = 64;
  sa.d_v = 32;
  ModuleConfig mha = make(Variant::kMha, 512);
  mha.num_heads = 8;
  ModuleConfig gqa = make(Variant::kGqa, 512);
  gqa.num_heads = 8;
  gqa.num_kv_heads = 2;
  ModuleConfig mqa = make(Variant::kMqa, 512);
  mqa.num_heads = 8;
  ModuleConfig mla = make(Variant::kMla, 512);
  mla.num_heads = 8;
  mla.q_lora_rank = 192;
  mla.kv_lora_rank = 128;
  mla.qk_nope_head_dim = 32;
  mla.qk_rope_head_dim = 16;
  mla.v_head_dim = 32;
  return {Demo{"demo-sa", sa}, Demo{"demo-mha", mha}, Demo{"demo-gqa", gqa}, Demo{"demo-mqa", mqa},
          Demo{"demo-mla", mla}};
}

}  // namespace

absl::Status LoadDemoModules(ModuleRegistry& registry) {
  uint64_t seed = 1;
  for (const Demo& d : Demos()) {
    ATTN_ASSIGN_OR_RETURN(std::unique_ptr<AttentionModule> m,
                          AttentionModule::CreateRandom(d.config, seed++));
    ::attention::v1::ModuleConfig config;
    ConfigToProto(d.config, &config);
    ATTN_RETURN_IF_ERROR(
        registry.Add(d.name, MakeLoadedModule(d.name, config, std::move(m)), /*replace=*/true));
  }
  return absl::OkStatus();
}

std::vector<std::string> DemoModuleNames() {
  std::vector<std::string> names;
  for (const Demo& d : Demos()) names.push_back(d.name);
  return names;
}

}  // namespace attention::server
