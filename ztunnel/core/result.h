// Result-style error handling for the data path: no exceptions (docs/STYLE.md).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace zt {

/// Errc names what went wrong, independent of the errno that may come with it.
enum class Errc : uint8_t {
  kSystem,           // a syscall failed; Error::sys holds the errno
  kTimeout,          // a deadline passed
  kCancelled,        // the operation was cancelled (drain, shutdown)
  kClosed,           // the peer or the object is closed
  kInvalidArgument,  // bad input from a caller or a flag
  kNotFound,         // a lookup found nothing (e.g. no original destination)
  kLoop,             // the destination is one of our own ports: proxying would loop
  kUnavailable,      // a required kernel feature is missing or blocked
  kResourceExhausted,
  kOverloaded,  // refused at once: a bound on pending work was reached
};

/// Error is cheap to copy and carries no heap memory, so it can travel the data path.
struct Error {
  Errc code = Errc::kSystem;
  int sys = 0;  // errno, when there is one

  static Error FromErrno(int err) { return Error{Errc::kSystem, err}; }
  /// Message renders the error for logs, e.g. "system error: Connection refused".
  std::string Message() const;
  bool operator==(const Error&) const = default;
};

/// ErrcName is the short lower-case name of an error code, e.g. "timeout".
const char* ErrcName(Errc code);

/// Result<T> holds either a T or an Error.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(error) {}         // NOLINT: implicit by design

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

/// Status is a Result without a value.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(error), ok_(false) {}  // NOLINT: implicit by design

  static Status Ok() { return Status(); }
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_{};
  bool ok_ = true;
};

}  // namespace zt
