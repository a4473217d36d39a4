#include "server/work_pool.h"

#include "core/threading.h"

namespace attention::server {

WorkPool::WorkPool(int workers, int compute_threads) {
  for (int i = 0; i < (workers < 1 ? 1 : workers); ++i) {
    threads_.emplace_back([this, compute_threads] { Loop(compute_threads); });
  }
}

WorkPool::~WorkPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (auto& t : threads_) t.join();
}

void WorkPool::Submit(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

bool WorkPool::TrySubmit(std::function<void()> task, int max_queued) {
  absl::MutexLock lock(&mu_);
  if (max_queued > 0 && static_cast<int>(tasks_.size()) >= max_queued) return false;
  tasks_.push_back(std::move(task));
  return true;
}

int WorkPool::queued() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(tasks_.size());
}

void WorkPool::Loop(int compute_threads) {
  // OpenMP's thread count is per calling thread: set it for this worker.
  SetComputeThreads(compute_threads);
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &WorkPool::Ready));
      if (tasks_.empty()) return;  // stopping and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace attention::server
