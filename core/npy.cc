#include "core/npy.h"

#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"

namespace attention {
namespace {

// Value of `key` in the header dict, up to the next top-level comma/brace.
absl::StatusOr<std::string> HeaderValue(const std::string& header, const std::string& key,
                                        const std::string& path) {
  const std::string quoted = "'" + key + "'";
  size_t pos = header.find(quoted);
  if (pos == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": .npy header has no '", key, "'"));
  }
  pos = header.find(':', pos + quoted.size());
  if (pos == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": malformed .npy header"));
  }
  ++pos;
  while (pos < header.size() && header[pos] == ' ') ++pos;
  size_t end = pos;
  if (end < header.size() && header[end] == '(') {
    end = header.find(')', end);
    if (end == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": malformed .npy shape"));
    }
    return header.substr(pos, end - pos + 1);
  }
  while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
  return std::string(absl::StripAsciiWhitespace(header.substr(pos, end - pos)));
}

int ElementSize(const std::string& descr) {
  int size = 0;
  if (descr.size() < 3 || !absl::SimpleAtoi(descr.substr(2), &size)) return 0;
  return size;
}

}  // namespace

absl::StatusOr<NpyArray> ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (content.size() < 10 || content.compare(0, 6, "\x93NUMPY") != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a .npy file"));
  }
  const int major = static_cast<unsigned char>(content[6]);
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(content[8]) |
                 static_cast<size_t>(static_cast<unsigned char>(content[9])) << 8;
    offset = 10;
  } else {
    if (content.size() < 12) return absl::InvalidArgumentError(absl::StrCat(path, ": truncated"));
    for (int i = 0; i < 4; ++i) {
      header_len |= static_cast<size_t>(static_cast<unsigned char>(content[8 + i])) << (8 * i);
    }
    offset = 12;
  }
  if (offset + header_len > content.size()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated header"));
  }
  const std::string header = content.substr(offset, header_len);
  NpyArray array;
  ATTN_ASSIGN_OR_RETURN(std::string descr, HeaderValue(header, "descr", path));
  array.descr = std::string(absl::StripSuffix(absl::StripPrefix(descr, "'"), "'"));
  ATTN_ASSIGN_OR_RETURN(std::string fortran, HeaderValue(header, "fortran_order", path));
  if (fortran != "False") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": Fortran-order arrays are not supported"));
  }
  ATTN_ASSIGN_OR_RETURN(std::string shape, HeaderValue(header, "shape", path));
  shape = std::string(absl::StripSuffix(absl::StripPrefix(shape, "("), ")"));
  for (absl::string_view part : absl::StrSplit(shape, ',', absl::SkipWhitespace())) {
    int64_t d = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &d) || d < 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": bad shape '", shape, "'"));
    }
    array.shape.push_back(d);
  }
  if (array.descr.size() < 3 || array.descr[0] == '>') {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": unsupported dtype '", array.descr, "' (need little-endian)"));
  }
  const int esize = ElementSize(array.descr);
  const int64_t n = NumElements(array.shape);
  if (esize <= 0 || n < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": unsupported dtype '", array.descr, "'"));
  }
  const size_t nbytes = static_cast<size_t>(n) * esize;
  if (content.size() - offset - header_len < nbytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": data shorter than shape ", ShapeString(array.shape), " needs"));
  }
  array.bytes.assign(content.begin() + offset + header_len,
                     content.begin() + offset + header_len + nbytes);
  return array;
}

absl::StatusOr<Tensor> ReadNpyAsFloat(const std::string& path) {
  ATTN_ASSIGN_OR_RETURN(NpyArray a, ReadNpy(path));
  const int64_t n = NumElements(a.shape);
  Tensor t(a.shape);
  const char kind = a.descr[1];
  const int size = ElementSize(a.descr);
  const uint8_t* p = a.bytes.data();
  auto load = [&](auto tag, int64_t i) {
    decltype(tag) v;
    std::memcpy(&v, p + i * sizeof(v), sizeof(v));
    return static_cast<float>(v);
  };
  if (kind == 'f' && size == 4) {
    DecodeToFloat(DType::kFloat32, p, n, t.data());
  } else if (kind == 'f' && size == 2) {
    DecodeToFloat(DType::kFloat16, p, n, t.data());
  } else if (kind == 'f' && size == 8) {
    for (int64_t i = 0; i < n; ++i) t.data()[i] = load(double{}, i);
  } else if (kind == 'b' || (kind == 'u' && size == 1)) {
    for (int64_t i = 0; i < n; ++i) t.data()[i] = static_cast<float>(p[i]);
  } else if (kind == 'i' && size == 1) {
    for (int64_t i = 0; i < n; ++i) t.data()[i] = load(int8_t{}, i);
  } else if (kind == 'i' && size == 4) {
    for (int64_t i = 0; i < n; ++i) t.data()[i] = load(int32_t{}, i);
  } else if (kind == 'i' && size == 8) {
    for (int64_t i = 0; i < n; ++i) t.data()[i] = load(int64_t{}, i);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": dtype '", a.descr, "' cannot be read as float32"));
  }
  return t;
}

absl::Status WriteNpyRaw(const std::string& path, const std::string& descr,
                         const std::vector<int64_t>& shape, const void* data, size_t nbytes) {
  std::string shape_str = "(";
  for (int64_t d : shape) absl::StrAppend(&shape_str, d, ", ");
  if (shape.size() > 1) shape_str.resize(shape_str.size() - 1);  // "(2, 3)" not "(2, 3, )"
  if (shape.size() > 1)
    shape_str.back() = ')';
  else
    shape_str = shape.empty() ? "()" : absl::StrCat("(", shape[0], ",)");
  std::string header =
      absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': ", shape_str, ", }");
  // Pad so that the data starts at a multiple of 64 bytes; end with '\n'.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  if (!out) return absl::NotFoundError(absl::StrCat(path, ": cannot create"));
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(nbytes));
  if (!out) return absl::InternalError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

absl::Status WriteNpy(const std::string& path, const Tensor& t, DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return WriteNpyRaw(path, "<f4", t.shape(), t.data(), t.values().size() * 4);
    case DType::kFloat16: {
      std::vector<uint16_t> h(t.values().size());
      FloatToHalf(t.data(), h.data(), t.size());
      return WriteNpyRaw(path, "<f2", t.shape(), h.data(), h.size() * 2);
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": .npy cannot hold ", DTypeName(dtype)));
  }
}

}  // namespace attention
