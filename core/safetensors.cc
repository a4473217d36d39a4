#include "core/safetensors.h"

#include <cstring>
#include <fstream>
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

// A header entry's dtype, shape and byte range, checked against the
// data's size.
struct Extent {
  DType type = DType::kFloat32;
  std::vector<int64_t> shape;
  int64_t count = 0;
  uint64_t begin = 0, end = 0;
};

absl::StatusOr<Extent> ParseEntry(const std::string& where, const nlohmann::json& entry,
                                  uint64_t data_bytes, int64_t max_elements) {
  if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
      !entry.contains("data_offsets") || !entry["dtype"].is_string() ||
      !entry["shape"].is_array() || !entry["data_offsets"].is_array() ||
      entry["data_offsets"].size() != 2) {
    return Bad(where, "expected {\"dtype\", \"shape\", \"data_offsets\": [begin, end]}");
  }
  const std::string dtype = entry["dtype"].get<std::string>();
  Extent x;
  int64_t element = 0;
  if (!ElementOf(dtype, &x.type, &element)) {
    return Bad(where, absl::StrCat("dtype expected F32, F16 or BF16, got ", dtype));
  }
  x.count = 1;
  for (const auto& d : entry["shape"]) {
    if (!d.is_number_unsigned()) return Bad(where, "shape: expected non-negative integers");
    const uint64_t dim = d.get<uint64_t>();
    // count · dim · (element size <= 4) stays within int64_t.
    constexpr uint64_t kMaxCount = static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / 8);
    if (dim > kMaxCount || (dim != 0 && static_cast<uint64_t>(x.count) > kMaxCount / dim)) {
      return Bad(where, "shape: too many elements");
    }
    x.shape.push_back(static_cast<int64_t>(dim));
    x.count *= static_cast<int64_t>(dim);
  }
  if (max_elements > 0 && x.count > max_elements) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", x.count, " elements, more than the limit of ", max_elements));
  }
  const auto& offsets = entry["data_offsets"];
  if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
    return Bad(where, "data_offsets: expected two non-negative integers");
  }
  x.begin = offsets[0].get<uint64_t>(), x.end = offsets[1].get<uint64_t>();
  if (x.begin > x.end || x.end > data_bytes) {
    return Bad(where, absl::StrCat("data_offsets [", x.begin, ", ", x.end, ") outside the ",
                                   data_bytes, " data bytes"));
  }
  if (x.end - x.begin != static_cast<uint64_t>(x.count * element)) {
    return Bad(where, absl::StrCat("data_offsets span ", x.end - x.begin, " bytes, but ", dtype,
                                   " ", ShapeString(x.shape), " needs ", x.count * element));
  }
  return x;
}

// The header length and the parsed header of an image whose first 8 bytes
// are `length_bytes` and whose size is `total`; `read_header` fetches the
// header bytes.
template <typename ReadHeader>
absl::StatusOr<nlohmann::json> ParseHeader(absl::string_view what, const char* length_bytes,
                                           uint64_t total, uint64_t* header_bytes,
                                           ReadHeader read_header) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<uint8_t>(length_bytes[i]);
  if (n > kMaxHeaderBytes || n > total - 8) {
    return Bad(what, absl::StrCat("header length ", n, " past the ", total,
                                  "-byte file (or over 100 MB)"));
  }
  *header_bytes = n;
  std::string header;
  if (!read_header(n, &header)) return Bad(what, "cannot read the header");
  nlohmann::json json = nlohmann::json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return Bad(what, "header is not a JSON object");
  return json;
}

// Every tensor whose name starts with `prefix`, its bytes fetched by
// read(offset into the data, size, destination).
template <typename ReadData>
absl::StatusOr<TensorMap> ReadTensors(const nlohmann::json& json, absl::string_view what,
                                      uint64_t data_bytes, int64_t max_elements,
                                      absl::string_view prefix, int64_t max_total_elements,
                                      ReadData read) {
  // The whole header first: every entry checked, the total bounded.
  std::vector<std::pair<std::string, Extent>> selected;
  int64_t total = 0;
  for (const auto& [name, entry] : json.items()) {
    if (name == "__metadata__" || !absl::StartsWith(name, prefix)) continue;
    const std::string where = absl::StrCat(what, ": tensor '", name, "'");
    absl::StatusOr<Extent> x = ParseEntry(where, entry, data_bytes, max_elements);
    if (!x.ok()) return x.status();
    total += x->count;  // each count < 2^60: no overflow for any real header
    if (max_total_elements > 0 && total > max_total_elements) {
      return absl::InvalidArgumentError(absl::StrCat(
          "weights_prefix: the tensors of ", what, " under '", prefix, "' hold more than ",
          max_total_elements, " elements, more than the layer needs (end the prefix with '.')"));
    }
    selected.emplace_back(name, *std::move(x));
  }
  TensorMap tensors;
  std::string buffer;
  for (const auto& [name, x] : selected) {
    buffer.resize(x.end - x.begin);
    if (!read(x.begin, buffer.size(), buffer.data())) {
      return Bad(absl::StrCat(what, ": tensor '", name, "'"), "cannot read its data");
    }
    Tensor t(x.shape);
    DecodeToFloat(x.type, buffer.data(), x.count, t.data());
    tensors.emplace(name, std::move(t));
  }
  return tensors;
}

}  // namespace

absl::StatusOr<TensorMap> ParseSafetensors(absl::string_view bytes, absl::string_view what,
                                           int64_t max_elements) {
  if (bytes.size() < 8) return Bad(what, "shorter than the 8-byte header length");
  uint64_t header_bytes = 0;
  absl::StatusOr<nlohmann::json> json = ParseHeader(what, bytes.data(), bytes.size(), &header_bytes,
                                                    [&](uint64_t n, std::string* out) {
                                                      out->assign(bytes.data() + 8, n);
                                                      return true;
                                                    });
  if (!json.ok()) return json.status();
  const absl::string_view data = bytes.substr(8 + header_bytes);
  return ReadTensors(*json, what, data.size(), max_elements, "", 0,
                     [&](uint64_t offset, size_t n, char* out) {
                       std::memcpy(out, data.data() + offset, n);
                       return true;
                     });
}

absl::StatusOr<TensorMap> ReadSafetensors(const std::string& path, int64_t max_elements,
                                          absl::string_view prefix, int64_t max_total_elements) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  const uint64_t total = static_cast<uint64_t>(in.tellg());
  char length[8];
  in.seekg(0);
  if (total < 8 || !in.read(length, 8)) return Bad(path, "shorter than the 8-byte header length");
  uint64_t header_bytes = 0;
  absl::StatusOr<nlohmann::json> json =
      ParseHeader(path, length, total, &header_bytes, [&](uint64_t n, std::string* out) {
        out->resize(n);
        return static_cast<bool>(in.read(out->data(), static_cast<std::streamsize>(n)));
      });
  if (!json.ok()) return json.status();
  const uint64_t data_start = 8 + header_bytes;
  return ReadTensors(*json, path, total - data_start, max_elements, prefix, max_total_elements,
                     [&](uint64_t offset, size_t n, char* out) {
                       in.seekg(static_cast<std::streamoff>(data_start + offset));
                       return static_cast<bool>(in.read(out, static_cast<std::streamsize>(n)));
                     });
}

std::string SafetensorsImage(const TensorMap& tensors) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (const auto& [name, t] : tensors) {
    const uint64_t begin = data.size();
    data.append(reinterpret_cast<const char*>(t.data()), static_cast<size_t>(t.size()) * 4);
    header[name] = {{"dtype", "F32"}, {"shape", t.shape()}, {"data_offsets", {begin, data.size()}}};
  }
  const std::string json = header.dump();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(uint64_t{json.size()} >> (8 * i) & 0xff);
  return out + json + data;
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
