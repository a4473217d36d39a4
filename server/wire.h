// Responses whose tensors go onto the wire without being copied: the core
// writes a result straight into a gRPC slice, and the serialised response is
// that slice plus a few small ones around it. Through the generated
// (protobuf) handlers, a 4 MiB output was zero-filled when the response was
// sized, then copied again when gRPC serialised the message.
//
// The bytes are an ordinary protobuf encoding of the message: its other
// fields first, then each tensor field once, whole (dtype and shape, then
// data). Any protobuf parser reads it; none has to merge repeated fields.
#ifndef ATTENTION_SERVER_WIRE_H_
#define ATTENTION_SERVER_WIRE_H_

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "attention/v1/attention.pb.h"

namespace attention::server {

namespace pb = ::attention::v1;

// A response message (the "head": every field but its large tensors) and
// the tensors that follow it on the wire. Not thread-safe; the head is the
// caller's and must outlive this.
class TensorResponse {
 public:
  explicit TensorResponse(google::protobuf::MessageLite* head) : head_(head) {}

  // Adds the Tensor at `field_number` of the head's message type (left unset
  // in the head) with `dtype` and `shape`, and returns `bytes` bytes of
  // uninitialised storage for its data, aligned for floats, valid until
  // Clear() or destruction (the serialised buffer keeps its own reference).
  void* AddTensor(int field_number, pb::DType dtype, const std::vector<int64_t>& shape,
                  size_t bytes);

  // Clears the head and drops the tensors.
  void Clear();

  // Size of the serialised response in bytes.
  size_t ByteSizeLong() const;

  // The head, then each tensor: tensor bytes are referenced, not copied.
  grpc::ByteBuffer Serialize() const;

 private:
  struct Part {
    int field_number;
    pb::Tensor meta;  // dtype and shape; data stays empty
    grpc::Slice data;
  };
  // Bytes of the Tensor field `p` as a submessage (meta, data tag, data).
  static size_t TensorBytes(const Part& p);

  google::protobuf::MessageLite* head_;
  std::vector<Part> parts_;
};

// Parses a serialised request into `message` (false when it is not one).
bool ParseRequest(const grpc::ByteBuffer& request, google::protobuf::MessageLite* message);

}  // namespace attention::server

#endif  // ATTENTION_SERVER_WIRE_H_
