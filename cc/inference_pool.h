// A fixed pool of inference threads with a bounded queue: TensorFlow runs never exceed the configured
// concurrency, and a full queue is refused immediately instead of growing latency without bound.
#ifndef TFAD_CC_INFERENCE_POOL_H_
#define TFAD_CC_INFERENCE_POOL_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tfad {

class InferencePool {
 public:
  // `thread_nice` (0..19) is added to each worker's nice value before it runs anything (thread_priority.h).
  InferencePool(int threads, int max_queue, int thread_nice = 0);
  ~InferencePool();  // runs what is queued, then joins

  // Queues `task`; false when max_queue tasks are already waiting.
  bool TrySubmit(std::function<void()> task);
  int threads() const { return static_cast<int>(workers_.size()); }
  // Tasks waiting for a thread (not those running).
  size_t queued();

 private:
  const size_t max_queue_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace tfad

#endif  // TFAD_CC_INFERENCE_POOL_H_
