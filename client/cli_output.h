// attention_cli's output: the text it prints for tensors, timings, modules
// and the server's state.
#ifndef ATTENTION_CLIENT_CLI_OUTPUT_H_
#define ATTENTION_CLIENT_CLI_OUTPUT_H_

#include <vector>

#include "client/attention_client.h"

namespace attention::client {

// "LABEL: shape [..] DTYPE, mean M, max|x| X, first: a b c ..."
void PrintTensor(const char* label, const Tensor& t, pb::DType dtype);
// "timing: queue Q us, compute C us, F GFLOP (R GFLOP/s)"
void PrintTiming(const Timing& t);
// One line: name, variant, d_model, parameters, KV bytes per token.
void PrintModule(const pb::ModuleInfo& m);
// `info`: one "name: value" line per figure, grouped under server,
// variants, modules, limits, load, kv_cache and calls (scripts read
// "blocks_used: N" and "inflight_requests: N" with awk and grep).
void PrintServerInfo(const pb::ServerInfo& info, const std::vector<pb::ModuleInfo>& modules);

}  // namespace attention::client

#endif  // ATTENTION_CLIENT_CLI_OUTPUT_H_
