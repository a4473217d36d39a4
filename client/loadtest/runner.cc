#include "client/loadtest/runner.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/generic/generic_stub.h>
#include <google/protobuf/descriptor.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/proto_buffer_reader.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "attention/v1/attention.grpc.pb.h"
#include "client/loadtest/recorder.h"

namespace attention::loadtest {
namespace {

namespace pb = ::attention::v1;
using Clock = std::chrono::steady_clock;

int64_t Nanos(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

// DecodeResponse.reused_tokens when the contract has it (found by name, so
// this compiles with and without it); null otherwise.
const google::protobuf::FieldDescriptor* ReusedTokensField() {
  const google::protobuf::FieldDescriptor* f =
      pb::DecodeResponse::descriptor()->FindFieldByName("reused_tokens");
  return f != nullptr && f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_INT64 ? f
                                                                                            : nullptr;
}

// The number of the next decode stream, its prompt's seed: it counts on over
// the phases and runs of the process, so that no two streams of a sweep share
// more than the shared prefix (a server's prefix cache sees no repeats).
std::atomic<uint64_t> next_stream{0};

int64_t ReusedTokens(const pb::DecodeResponse& r, const google::protobuf::FieldDescriptor* f) {
  return f == nullptr ? 0 : r.GetReflection()->GetInt64(r, f);
}

std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// timing.compute_us of a serialised Attend/Forward response, read without
// parsing (or copying) its tensors: the wire format is scanned and every
// other field skipped. -1 when absent.
int64_t ComputeMicros(grpc::ByteBuffer& response, int timing_field) {
  if (timing_field == 0) return -1;
  grpc::ProtoBufferReader reader(&response);
  google::protobuf::io::CodedInputStream in(&reader);
  using google::protobuf::internal::WireFormatLite;
  while (const uint32_t tag = in.ReadTag()) {
    if (static_cast<int>(WireFormatLite::GetTagFieldNumber(tag)) == timing_field &&
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      uint32_t length = 0;
      std::string bytes;
      pb::Timing timing;
      if (!in.ReadVarint32(&length) || !in.ReadString(&bytes, static_cast<int>(length)) ||
          !timing.ParseFromString(bytes)) {
        return -1;
      }
      return timing.compute_us();
    }
    if (!WireFormatLite::SkipField(&in, tag)) return -1;
  }
  return -1;
}

struct Connection {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<grpc::GenericStub> generic;
  std::unique_ptr<pb::AttentionService::Stub> stub;
};

class Runner {
 public:
  Runner(const RunConfig& config, const std::vector<Workload>& workloads,
         std::vector<Connection>& connections)
      : config_(config), workloads_(workloads), connections_(connections) {
    for (size_t i = 0; i < workloads.size(); ++i) {
      for (int k = 0; k < std::max(1, workloads[i].weight); ++k) order_.push_back(i);
      grpc::Slice slice(workloads[i].request);
      requests_.emplace_back(&slice, 1);
    }
  }

  RunResult Phase(double duration_s, int64_t requests, bool record) {
    start_ = Clock::now();
    end_ = duration_s > 0 ? start_ + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(duration_s))
                          : Clock::time_point::max();
    max_requests_ = requests;
    tickets_ = 0;
    recorder_ = std::make_unique<Recorder>(start_, record, workloads_[0].rpc == RpcKind::kDecode,
                                           ReusedTokensField() != nullptr);
    std::atomic<bool> finished{false};
    std::thread progress;
    if (record && config_.progress && isatty(STDERR_FILENO)) {
      progress = std::thread([&] { Progress(finished); });
    }
    if (workloads_[0].rpc == RpcKind::kDecode) {
      DecodeClosedLoop();
    } else if (config_.rps > 0) {
      OpenLoop();
    } else {
      ClosedLoop();
    }
    finished = true;
    if (progress.joinable()) progress.join();
    return recorder_->Take(Clock::now());
  }

 private:
  // A ticket per request: false once the run's bound is reached.
  bool Take(int64_t& ticket) {
    if (Clock::now() >= end_) return false;
    ticket = tickets_++;
    return max_requests_ == 0 || ticket < max_requests_;
  }

  // Decode: the steps of a stream about to open (up to `steps`, fewer when
  // the request bound leaves fewer); 0 once the run's bound is reached.
  int64_t TakeSteps(int64_t steps) {
    if (Clock::now() >= end_) return 0;
    const int64_t first = tickets_.fetch_add(steps);
    if (max_requests_ == 0) return steps;
    return std::clamp<int64_t>(max_requests_ - first, 0, steps);
  }

  void Prepare(grpc::ClientContext& ctx) const {
    if (config_.deadline_ms > 0) {
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::microseconds(static_cast<int64_t>(config_.deadline_ms * 1e3)));
    }
    for (const auto& [k, v] : config_.metadata) ctx.AddMetadata(k, v);
  }

  struct Call {
    grpc::ClientContext ctx;
    grpc::ByteBuffer request, response;
  };

  // Sends request `ticket` (its workload by weight), recording its latency
  // from `from`; then runs `done`.
  template <typename Done>
  void Issue(int64_t ticket, Clock::time_point from, Done done) {
    const size_t wi = order_[static_cast<size_t>(ticket) % order_.size()];
    const Workload& w = workloads_[wi];
    Connection& c = connections_[static_cast<size_t>(ticket) % connections_.size()];
    auto* call = new Call;
    Prepare(call->ctx);
    call->request = requests_[wi];
    c.generic->UnaryCall(&call->ctx, w.method, grpc::StubOptions(), &call->request,
                         &call->response, [this, call, from, &w, done](grpc::Status s) {
                           const int64_t compute_us =
                               s.ok() ? ComputeMicros(call->response, w.timing_field) : -1;
                           recorder_->Record(from, CodeName(s.error_code()), s.error_message(), w,
                                             compute_us);
                           delete call;
                           done();
                         });
  }

  void ClosedLoop() {
    std::mutex mu;
    std::condition_variable cv;
    int active = config_.concurrency;
    std::function<void()> user_done = [&] {
      std::lock_guard<std::mutex> lock(mu);
      if (--active == 0) cv.notify_all();
    };
    std::function<void()> next = [&, this] {
      int64_t ticket;
      if (!Take(ticket)) return user_done();
      Issue(ticket, Clock::now(), next);
    };
    for (int u = 0; u < config_.concurrency; ++u) next();
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return active == 0; });
  }

  void OpenLoop() {
    const auto period = std::chrono::duration<double>(1.0 / config_.rps);
    std::mutex mu;
    std::condition_variable cv;
    int64_t outstanding = 0;
    for (int64_t i = 0;; ++i) {
      const Clock::time_point scheduled =
          start_ + std::chrono::duration_cast<Clock::duration>(period * static_cast<double>(i));
      if (scheduled >= end_ || (max_requests_ > 0 && i >= max_requests_)) break;
      std::this_thread::sleep_until(scheduled);
      {
        std::lock_guard<std::mutex> lock(mu);
        if (outstanding >= config_.max_outstanding) {
          recorder_->Record(scheduled, "CLIENT_OUTSTANDING_LIMIT",
                            "more requests outstanding than the client allows", workloads_[0]);
          continue;
        }
        ++outstanding;
      }
      Issue(i, scheduled, [&] {
        std::lock_guard<std::mutex> lock(mu);
        if (--outstanding == 0) cv.notify_all();
      });
    }
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return outstanding == 0; });
  }

  // Decode: each virtual user runs streams back to back until the bound.
  void DecodeClosedLoop() {
    const Workload& w = workloads_[0];
    pb::DecodeRequest start, token;
    start.ParseFromString(w.decode_start);
    token.ParseFromString(w.decode_token);
    std::vector<std::thread> users;
    for (int u = 0; u < config_.concurrency; ++u) {
      users.emplace_back([&, u] {
        Connection& c = connections_[static_cast<size_t>(u) % connections_.size()];
        while (DecodeStream(c, w, start, token)) {
        }
      });
    }
    for (auto& t : users) t.join();
  }

  // One stream: start, the prompt (time to first token), then its steps,
  // each recorded as a request, the gaps between their responses as
  // inter-token latencies. False when the run's bound is reached.
  bool DecodeStream(Connection& c, const Workload& w, const pb::DecodeRequest& start,
                    const pb::DecodeRequest& token) {
    const int64_t steps = TakeSteps(w.decode_steps);
    if (steps == 0) return false;
    pb::DecodeRequest prompt;
    DecodePromptRequest(w, next_stream.fetch_add(1), &prompt);
    static const google::protobuf::FieldDescriptor* const reused = ReusedTokensField();
    grpc::ClientContext ctx;
    Prepare(ctx);
    auto stream = c.stub->Decode(&ctx);
    pb::DecodeResponse resp;
    bool ok = stream->Write(start);
    const Clock::time_point sent = Clock::now();
    ok = ok && stream->Write(prompt) && stream->Read(&resp);
    const Clock::time_point first = Clock::now();
    if (ok) recorder_->RecordFirstToken(Nanos(first - sent), ReusedTokens(resp, reused));
    Clock::time_point last = first;
    int64_t done = 0;
    for (; ok && done < steps && Clock::now() < end_; ++done) {
      const Clock::time_point from = Clock::now();
      ok = stream->Write(token) && stream->Read(&resp);
      if (!ok) break;
      const Clock::time_point now = Clock::now();
      recorder_->Record(from, "OK", "", w);
      if (done > 0) recorder_->RecordInterToken(Nanos(now - last));
      last = now;
    }
    if (done > 0 && last > first) {
      recorder_->RecordStreamRate(static_cast<double>(w.decode_b * done) /
                                  std::chrono::duration<double>(last - first).count());
    }
    if (ok) {
      stream->WritesDone();
    } else {
      ctx.TryCancel();
    }
    const grpc::Status st = stream->Finish();
    if (!ok) {
      recorder_->Record(Clock::now(),
                        CodeName(st.ok() ? grpc::StatusCode::UNKNOWN : st.error_code()),
                        st.ok() ? "the stream ended before its response" : st.error_message(), w);
    }
    return Clock::now() < end_;
  }

  void Progress(const std::atomic<bool>& finished) {
    while (!finished) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      const double t = std::chrono::duration<double>(Clock::now() - start_).count();
      const int64_t done = recorder_->done();
      std::fprintf(stderr, "\r  %6.1fs  %10lld done  %9.1f req/s  %lld errors   ", t,
                   static_cast<long long>(done), t > 0 ? done / t : 0.0,
                   static_cast<long long>(recorder_->errors()));
      std::fflush(stderr);
    }
    std::fprintf(stderr, "\r\033[K");
  }

  const RunConfig& config_;
  const std::vector<Workload>& workloads_;
  std::vector<Connection>& connections_;
  std::vector<size_t> order_;
  std::vector<grpc::ByteBuffer> requests_;
  Clock::time_point start_, end_;
  int64_t max_requests_ = 0;
  std::atomic<int64_t> tickets_{0};
  std::unique_ptr<Recorder> recorder_;
};

}  // namespace

absl::StatusOr<RunResult> RunLoad(const RunConfig& config, const std::vector<Workload>& workloads) {
  if (workloads.empty()) return absl::InvalidArgumentError("workload: none given");
  if (config.targets.empty()) return absl::InvalidArgumentError("--target: none given");
  if (config.duration_s <= 0 && config.requests <= 0) {
    return absl::InvalidArgumentError("--duration or --requests: a run must be bounded");
  }
  if (config.connections < 1 || config.concurrency < 1) {
    return absl::InvalidArgumentError("--connections and --concurrency: expected >= 1");
  }
  for (const Workload& w : workloads) {
    if (w.rpc == RpcKind::kDecode && (workloads.size() > 1 || config.rps > 0)) {
      return absl::InvalidArgumentError(
          "decode: runs alone and closed-loop (--concurrency streams), not in a mix or with --rps");
    }
  }
  std::vector<Connection> connections(static_cast<size_t>(config.connections));
  for (int i = 0; i < config.connections; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("attention.loadtest.connection", i);  // distinct args: a connection each
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    args.SetLoadBalancingPolicyName("round_robin");
    std::string target = config.targets[static_cast<size_t>(i) % config.targets.size()];
    Connection& c = connections[static_cast<size_t>(i)];
    if (!config.tls.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(config.tls.tls_server_name);
    }
    c.channel = grpc::CreateCustomChannel(target, client::ChannelCredentials(config.tls), args);
    if (!c.channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      return absl::UnavailableError(absl::StrCat("--target: cannot connect to ", target));
    }
    c.generic = std::make_unique<grpc::GenericStub>(c.channel);
    c.stub = pb::AttentionService::NewStub(c.channel);
  }
  Runner runner(config, workloads, connections);
  if (config.warmup_s > 0) runner.Phase(config.warmup_s, 0, /*record=*/false);
  RunResult result = runner.Phase(config.duration_s, config.requests, /*record=*/true);
  result.config = config;
  for (const Workload& w : workloads) result.workloads.push_back(w.name);
  return result;
}

}  // namespace attention::loadtest
