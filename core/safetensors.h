// Reading Hugging Face `.safetensors` checkpoints, and picking one attention
// layer's tensors out of a model's by Hugging Face names.
//
// Format: an 8-byte little-endian header length N, N bytes of JSON mapping
// each tensor name to {"dtype", "shape", "data_offsets": [begin, end)}
// (offsets into the data that follows the header; "__metadata__" holds
// strings), then the data. Tensors of F32, F16 and BF16 are read (as
// float32); any other dtype is INVALID_ARGUMENT naming the tensor.
#ifndef ATTENTION_CORE_SAFETENSORS_H_
#define ATTENTION_CORE_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/config.h"
#include "core/tensor.h"

namespace attention {

// Tensors by name (the WeightMap of core/module.h).
using TensorMap = std::map<std::string, Tensor>;

// Parses a whole .safetensors image. `what` names the source in errors (a
// file name). A tensor of more than `max_elements` elements (0: no limit),
// a header that is not the format's, and offsets outside the data or not
// matching dtype × shape are INVALID_ARGUMENT with the tensor's name (a
// name given twice in the header: its last entry counts).
absl::StatusOr<TensorMap> ParseSafetensors(absl::string_view bytes, absl::string_view what,
                                           int64_t max_elements = 0);

// Reads a file's tensors whose names start with `prefix` (all for ""),
// reading only their bytes (one layer out of a whole model's file):
// NOT_FOUND if it cannot be opened, else as above. More than
// `max_total_elements` elements under the prefix together (0: no limit) is
// INVALID_ARGUMENT naming "weights_prefix", before any data is read.
absl::StatusOr<TensorMap> ReadSafetensors(const std::string& path, int64_t max_elements = 0,
                                          absl::string_view prefix = "",
                                          int64_t max_total_elements = 0);

// The .safetensors image of `tensors`, all F32 (names sorted, data in that
// order; "__metadata__" {"format": "pt"}).
std::string SafetensorsImage(const TensorMap& tensors);

// One layer's state_dict out of a checkpoint's tensors: names that start
// with `prefix` keep the rest of their name (the others are dropped; an
// empty prefix keeps all); then, for mha, gqa and mqa, Hugging Face's
// q_proj, k_proj, v_proj and o_proj (.weight, .bias) become W_q, W_k, W_v
// and W_o. A tensor named both ways is INVALID_ARGUMENT naming both; no
// tensor left after the prefix is INVALID_ARGUMENT naming
// "weights_prefix". Shapes are checked later, by AttentionModule::Create.
absl::StatusOr<TensorMap> SelectLayerWeights(TensorMap tensors, absl::string_view prefix,
                                             const ModuleConfig& config);

}  // namespace attention

#endif  // ATTENTION_CORE_SAFETENSORS_H_
