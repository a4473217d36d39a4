// A fixed pool of compute threads, separate from gRPC's threads. Each worker
// runs one request at a time with `compute_threads` OpenMP threads of its own.
#ifndef ATTENTION_SERVER_WORK_POOL_H_
#define ATTENTION_SERVER_WORK_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include <condition_variable>
#include <mutex>

namespace attention::server {

class WorkPool {
 public:
  WorkPool(int workers, int compute_threads);
  // Runs every task already submitted, then joins the workers.
  ~WorkPool();

  void Submit(std::function<void()> task);
  // Submits unless `max_queued` (> 0) tasks are already waiting.
  bool TrySubmit(std::function<void()> task, int max_queued);
  int queued() const;
  int workers() const { return static_cast<int>(threads_.size()); }

 private:
  void Loop(int compute_threads);

  // std::mutex (not absl::Mutex): ThreadSanitizer sees pthread locking, not
  // the uninstrumented absl library's.
  mutable std::mutex mu_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace attention::server

#endif  // ATTENTION_SERVER_WORK_POOL_H_
