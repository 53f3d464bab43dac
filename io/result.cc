#include "io/result.h"

#include <cstdlib>

namespace pcimirror {

std::string Error::what() const {
  std::string reason = std::strerror(code);
  if (message.empty()) return reason;
  if (!from_kernel) return message;
  if (message.size() >= reason.size() &&
      message.compare(message.size() - reason.size(), reason.size(), reason) == 0)
    return message;
  return message + ": " + reason;
}

Error make_error(int err, std::string message) {
  return Error{err < 0 ? -err : (err == 0 ? EIO : err), std::move(message)};
}

Error sys_error(int err, std::string message) {
  Error e = make_error(err, std::move(message));
  e.from_kernel = true;
  return e;
}

Error errno_error(std::string message) {
  return sys_error(errno, std::move(message));
}

}  // namespace pcimirror
