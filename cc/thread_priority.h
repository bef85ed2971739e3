// TensorFlow's threads can run at a lower CPU priority (a higher nice value, --inference_nice) than the
// gRPC threads, so that when inference holds every core the thread that must send a REJECT_INCOMPLETE at
// the deadline gets a core first. Off by default: measured (docs/serving.md, fail-safe rule 3) it did not
// raise the in-time rate, and under another process's load it starves inference. Linux keeps the nice
// value per thread and a new thread inherits its creator's, so lowering the priority of the threads that
// load models and run inference also lowers every thread TensorFlow creates from them (its intra-/inter-op
// pools). Raising a nice value needs no privilege; lowering it again would, so it is done only on threads
// that do nothing else.
#ifndef TFAD_CC_THREAD_PRIORITY_H_
#define TFAD_CC_THREAD_PRIORITY_H_

#include <functional>

#include "cc/status.h"

namespace tfad {

// Adds `increment` (0..19) to the calling thread's nice value (Linux: per thread). 0 does nothing.
Status LowerCurrentThreadPriority(int increment);

// The calling thread's nice value.
int CurrentThreadNice();

// Runs `fn` on a new thread whose nice value is raised by `increment`, and waits for it.
void RunAtLowerPriority(int increment, const std::function<void()>& fn);

}  // namespace tfad

#endif  // TFAD_CC_THREAD_PRIORITY_H_
