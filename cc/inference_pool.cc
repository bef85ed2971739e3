#include "cc/inference_pool.h"

#include <exception>
#include <string>

#include "cc/structured_log.h"
#include "cc/thread_priority.h"

namespace tfad {
namespace {

// The last line of defence of a worker thread: an exception escaping a task would call std::terminate and
// take the server down. Tasks handle their own failures (RunJob answers REJECT_INCOMPLETE); this logs.
void LogTaskException(const char* what) noexcept {
  try {
    LogEvent(LogLevel::kError, "inference_pool_task_exception", {{"error", what}});
  } catch (...) {
  }
}

}  // namespace

InferencePool::InferencePool(int threads, int max_queue, int thread_nice)
    : max_queue_(static_cast<size_t>(max_queue < 1 ? 1 : max_queue)) {
  for (int i = 0; i < (threads < 1 ? 1 : threads); ++i) {
    workers_.emplace_back([this, thread_nice] {
      const Status priority = LowerCurrentThreadPriority(thread_nice);
      if (!priority.ok()) {
        LogEvent(LogLevel::kWarning, "thread_priority_unchanged", {{"thread", "inference"}, {"error", priority.message()}});
      }
      for (;;) {
        std::function<void()> task;
        {
          std::unique_lock<std::mutex> lock(mu_);
          cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
          if (queue_.empty()) return;  // stopping and drained
          task = std::move(queue_.front());
          queue_.pop_front();
        }
        try {
          task();
        } catch (const std::exception& e) {
          LogTaskException(e.what());
        } catch (...) {
          LogTaskException("a non-standard exception");
        }
      }
    });
  }
}

InferencePool::~InferencePool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
}

bool InferencePool::TrySubmit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || queue_.size() >= max_queue_) return false;
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

size_t InferencePool::queued() {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

}  // namespace tfad
