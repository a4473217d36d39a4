#include "server/wire.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpc/slice.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <string>

namespace attention::server {

namespace {

using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedOutputStream;

uint32_t LengthDelimitedTag(int field_number) {
  return WireFormatLite::MakeTag(field_number, WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
}

void AppendVarint(std::string& out, uint64_t v) {
  uint8_t buf[10];
  const uint8_t* end = CodedOutputStream::WriteVarint64ToArray(v, buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(end - buf));
}

}  // namespace

void* TensorResponse::AddTensor(int field_number, pb::DType dtype,
                                const std::vector<int64_t>& shape, size_t bytes) {
  Part p;
  p.field_number = field_number;
  p.meta.set_dtype(dtype);
  p.meta.mutable_shape()->Assign(shape.begin(), shape.end());
  // Never an inlined slice: its bytes would move with the Slice object.
  if (bytes > 0) p.data = grpc::Slice(grpc_slice_malloc_large(bytes), grpc::Slice::STEAL_REF);
  parts_.push_back(std::move(p));
  return const_cast<uint8_t*>(parts_.back().data.begin());
}

void TensorResponse::Clear() {
  head_->Clear();
  parts_.clear();
}

size_t TensorResponse::TensorBytes(const Part& p) {
  const size_t n = p.data.size();
  return p.meta.ByteSizeLong() +
         CodedOutputStream::VarintSize32(LengthDelimitedTag(pb::Tensor::kDataFieldNumber)) +
         CodedOutputStream::VarintSize64(n) + n;
}

size_t TensorResponse::ByteSizeLong() const {
  size_t total = head_->ByteSizeLong();
  for (const Part& p : parts_) {
    const size_t sub = TensorBytes(p);
    total += CodedOutputStream::VarintSize32(LengthDelimitedTag(p.field_number)) +
             CodedOutputStream::VarintSize64(sub) + sub;
  }
  return total;
}

grpc::ByteBuffer TensorResponse::Serialize() const {
  std::vector<grpc::Slice> slices;
  slices.reserve(1 + 2 * parts_.size());
  // Small fields are gathered into one slice until a tensor's data.
  std::string pending = head_->SerializeAsString();
  for (const Part& p : parts_) {
    AppendVarint(pending, LengthDelimitedTag(p.field_number));
    AppendVarint(pending, TensorBytes(p));
    p.meta.AppendToString(&pending);
    AppendVarint(pending, LengthDelimitedTag(pb::Tensor::kDataFieldNumber));
    AppendVarint(pending, p.data.size());
    slices.emplace_back(pending);
    pending.clear();
    if (p.data.size() > 0) slices.push_back(p.data);  // a reference, not a copy
  }
  if (!pending.empty() || slices.empty()) slices.emplace_back(pending);
  return grpc::ByteBuffer(slices.data(), slices.size());
}

bool ParseRequest(const grpc::ByteBuffer& request, google::protobuf::MessageLite* message) {
  // ProtoBufferReader reads the slices in place; it takes a non-const buffer
  // but does not change it.
  grpc::ProtoBufferReader reader(const_cast<grpc::ByteBuffer*>(&request));
  return message->ParseFromZeroCopyStream(&reader) && reader.status().ok();
}

}  // namespace attention::server
