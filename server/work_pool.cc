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
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkPool::Submit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
  }
  ready_.notify_one();
}

bool WorkPool::TrySubmit(std::function<void()> task, int max_queued) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (max_queued > 0 && static_cast<int>(tasks_.size()) >= max_queued) return false;
    tasks_.push_back(std::move(task));
  }
  ready_.notify_one();
  return true;
}

int WorkPool::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(tasks_.size());
}

void WorkPool::Loop(int compute_threads) {
  // OpenMP's thread count is per calling thread: set it for this worker.
  SetComputeThreads(compute_threads);
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ready_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace attention::server
