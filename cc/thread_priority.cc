#include "cc/thread_priority.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

namespace tfad {
namespace {

id_t CurrentThreadId() { return static_cast<id_t>(::syscall(SYS_gettid)); }

}  // namespace

int CurrentThreadNice() {
  errno = 0;
  return ::getpriority(PRIO_PROCESS, CurrentThreadId());
}

Status LowerCurrentThreadPriority(int increment) {
  if (increment < 0 || increment > 19) {
    return Status::Error("nice increment " + std::to_string(increment) + " is outside 0..19");
  }
  if (increment == 0) return Status::Ok();
  const int target = CurrentThreadNice() + increment;
  if (::setpriority(PRIO_PROCESS, CurrentThreadId(), target > 19 ? 19 : target) != 0) {
    return Status::Error(std::string("setpriority failed: ") + std::strerror(errno));
  }
  return Status::Ok();
}

void RunAtLowerPriority(int increment, const std::function<void()>& fn) {
  std::thread worker([&] {
    (void)LowerCurrentThreadPriority(increment);  // best effort: a failure only costs the priority
    fn();
  });
  worker.join();
}

}  // namespace tfad
