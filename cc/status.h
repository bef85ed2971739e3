// A minimal success-or-message result used by the server's core (no gRPC or TensorFlow dependency).
#ifndef TFAD_CC_STATUS_H_
#define TFAD_CC_STATUS_H_

#include <string>
#include <utility>

namespace tfad {

class Status {
 public:
  Status() = default;  // OK
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message), false); }

  bool ok() const { return ok_; }
  const std::string& message() const { return message_; }

 private:
  Status(std::string message, bool ok) : message_(std::move(message)), ok_(ok) {}
  std::string message_;
  bool ok_ = true;
};

}  // namespace tfad

#endif  // TFAD_CC_STATUS_H_
