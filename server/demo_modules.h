// The demo modules `attention_server --demo_modules` serves: five small
// seeded layers, one per variant, so that a new user can call Forward and
// Decode before loading anything.
//   demo-sa   self_attention  d_model 128, d_k 64, d_v 32
//   demo-mha  mha             d_model 512, 8 heads
//   demo-gqa  gqa             d_model 512, 8 query heads, 2 kv heads
//   demo-mqa  mqa             d_model 512, 8 heads
//   demo-mla  mla             d_model 512, 8 heads, q_lora_rank 192,
//                             kv_lora_rank 128, qk_nope 32, qk_rope 16, v 32
#ifndef ATTENTION_SERVER_DEMO_MODULES_H_
#define ATTENTION_SERVER_DEMO_MODULES_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "server/registry.h"

namespace attention::server {

// Registers the demo modules (replacing modules of the same names), with
// random weights from fixed seeds.
absl::Status LoadDemoModules(ModuleRegistry& registry);

// Their names, in the order above.
std::vector<std::string> DemoModuleNames();

}  // namespace attention::server

#endif  // ATTENTION_SERVER_DEMO_MODULES_H_
