// Error plumbing shared by every layer: a Result<T> carries either a value or
// an Error (a negative errno plus a human message that names the device,
// option or slice and says what to do). No exceptions cross layer boundaries
// that FUSE callbacks reach.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace pcimirror {

/// An error: `code` is a positive errno value (EIO, EINVAL, ...), `message`
/// is one line for the user.
struct Error {
  int code = EIO;
  std::string message;
  /// True when `code` came from the kernel (a syscall or a CQE): what() then
  /// appends strerror(code). Validation errors carry their whole story in
  /// `message`.
  bool from_kernel = false;

  /// The message, with ": strerror(code)" for kernel errors.
  std::string what() const;
};

/// A validation error: a positive or negative errno and a complete message.
Error make_error(int err, std::string message);

/// An error the kernel returned (syscall, io_uring CQE): positive or
/// negative errno.
Error sys_error(int err, std::string message);

/// Builds a kernel error from the current `errno` (call right after a failed
/// syscall).
Error errno_error(std::string message);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(runtime/explicit)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(runtime/explicit)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { return std::get<1>(v_); }
  Error&& take_error() { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

/// Result of an operation that yields nothing.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : err_(std::move(error)), has_err_(true) {}  // NOLINT

  bool ok() const { return !has_err_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return err_; }
  Error&& take_error() { return std::move(err_); }

 private:
  Error err_;
  bool has_err_ = false;
};

using Status = Result<void>;

}  // namespace pcimirror

/// Propagates the error of a Result-returning expression.
#define PCIM_TRY(expr)                                    \
  do {                                                    \
    auto pcim_try_r_ = (expr);                            \
    if (!pcim_try_r_.ok()) return pcim_try_r_.take_error(); \
  } while (0)

#define PCIM_CONCAT_INNER(a, b) a##b
#define PCIM_CONCAT(a, b) PCIM_CONCAT_INNER(a, b)
/// `PCIM_ASSIGN_OR_RETURN(auto x, f());` binds the value or propagates the
/// error.
#define PCIM_ASSIGN_OR_RETURN(lhs, expr) \
  PCIM_ASSIGN_OR_RETURN_IMPL(PCIM_CONCAT(pcim_r_, __LINE__), lhs, expr)
#define PCIM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.take_error();          \
  lhs = std::move(tmp).value()
