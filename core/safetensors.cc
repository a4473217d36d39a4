#include "core/safetensors.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/dtype.h"
#include "nlohmann/json.hpp"

namespace attention {
namespace {

// A header larger than this is not a checkpoint's (the format's own
// readers refuse past 100 MB).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

absl::Status Bad(absl::string_view what, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", message));
}

// Element type and its size for the dtypes read here.
bool ElementOf(const std::string& dtype, DType* type, int64_t* size) {
  if (dtype == "F32") {
    *type = DType::kFloat32, *size = 4;
  } else if (dtype == "F16") {
    *type = DType::kFloat16, *size = 2;
  } else if (dtype == "BF16") {
    *type = DType::kBfloat16, *size = 2;
  } else {
    return false;
  }
  return true;
}

absl::StatusOr<Tensor> ParseTensor(const std::string& name, const nlohmann::json& entry,
                                   absl::string_view data, absl::string_view what,
                                   int64_t max_elements) {
  const std::string where = absl::StrCat(what, ": tensor '", name, "'");
  if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
      !entry.contains("data_offsets") || !entry["dtype"].is_string() ||
      !entry["shape"].is_array() || !entry["data_offsets"].is_array() ||
      entry["data_offsets"].size() != 2) {
    return Bad(where, "expected {\"dtype\", \"shape\", \"data_offsets\": [begin, end]}");
  }
  const std::string dtype = entry["dtype"].get<std::string>();
  DType type;
  int64_t element = 0;
  if (!ElementOf(dtype, &type, &element)) {
    return Bad(where, absl::StrCat("dtype expected F32, F16 or BF16, got ", dtype));
  }
  std::vector<int64_t> shape;
  int64_t count = 1;
  for (const auto& d : entry["shape"]) {
    if (!d.is_number_unsigned()) return Bad(where, "shape: expected non-negative integers");
    const uint64_t dim = d.get<uint64_t>();
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / 8) ||
        (dim != 0 && static_cast<uint64_t>(count) > (uint64_t{1} << 62) / dim)) {
      return Bad(where, "shape: too many elements");
    }
    shape.push_back(static_cast<int64_t>(dim));
    count *= static_cast<int64_t>(dim);
  }
  if (max_elements > 0 && count > max_elements) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", count, " elements, more than the limit of ", max_elements));
  }
  const auto& offsets = entry["data_offsets"];
  if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
    return Bad(where, "data_offsets: expected two non-negative integers");
  }
  const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
  if (begin > end || end > data.size()) {
    return Bad(where, absl::StrCat("data_offsets [", begin, ", ", end, ") outside the ",
                                   data.size(), " data bytes"));
  }
  if (end - begin != static_cast<uint64_t>(count * element)) {
    return Bad(where, absl::StrCat("data_offsets span ", end - begin, " bytes, but ", dtype, " ",
                                   ShapeString(shape), " needs ", count * element));
  }
  Tensor t(shape);
  DecodeToFloat(type, data.data() + begin, count, t.data());
  return t;
}

}  // namespace

absl::StatusOr<TensorMap> ParseSafetensors(absl::string_view bytes, absl::string_view what,
                                           int64_t max_elements) {
  if (bytes.size() < 8) return Bad(what, "shorter than the 8-byte header length");
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = header_bytes << 8 | static_cast<uint8_t>(bytes[i]);
  if (header_bytes > kMaxHeaderBytes || header_bytes > bytes.size() - 8) {
    return Bad(what, absl::StrCat("header length ", header_bytes, " past the ", bytes.size(),
                                  "-byte file (or over 100 MB)"));
  }
  const absl::string_view header = bytes.substr(8, header_bytes);
  const absl::string_view data = bytes.substr(8 + header_bytes);
  const nlohmann::json json = nlohmann::json::parse(header.begin(), header.end(), nullptr,
                                                    /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return Bad(what, "header is not a JSON object");
  }
  TensorMap tensors;
  for (const auto& [name, entry] : json.items()) {
    if (name == "__metadata__") continue;
    absl::StatusOr<Tensor> t = ParseTensor(name, entry, data, what, max_elements);
    if (!t.ok()) return t.status();
    tensors.emplace(name, *std::move(t));
  }
  return tensors;
}

absl::StatusOr<TensorMap> ReadSafetensors(const std::string& path, int64_t max_elements) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::NotFoundError(absl::StrCat(path, ": read failed"));
  return ParseSafetensors(bytes, path, max_elements);
}

absl::StatusOr<TensorMap> SelectLayerWeights(TensorMap tensors, absl::string_view prefix,
                                             const ModuleConfig& config) {
  TensorMap layer;
  for (auto& [name, t] : tensors) {
    if (!absl::StartsWith(name, prefix)) continue;
    layer.emplace(name.substr(prefix.size()), std::move(t));
  }
  if (layer.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("weights_prefix: no tensor name starts with '",
                                                   prefix, "' (", tensors.size(), " tensors)"));
  }
  const bool projected = config.variant == Variant::kMha || config.variant == Variant::kGqa ||
                         config.variant == Variant::kMqa;
  if (!projected) return layer;
  static constexpr std::pair<const char*, const char*> kNames[] = {
      {"q_proj", "W_q"}, {"k_proj", "W_k"}, {"v_proj", "W_v"}, {"o_proj", "W_o"}};
  TensorMap renamed;
  for (auto& [name, t] : layer) {
    std::string target = name;
    for (const auto& [hf, ours] : kNames) {
      for (const char* part : {".weight", ".bias"}) {
        if (name == absl::StrCat(hf, part)) target = absl::StrCat(ours, part);
      }
    }
    if (target != name && layer.count(target) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("weights['", name,
                                                     "']: the same tensor as weights['", target,
                                                     "'], given under both names"));
    }
    renamed.emplace(std::move(target), std::move(t));
  }
  return renamed;
}

}  // namespace attention
