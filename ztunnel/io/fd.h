// UniqueFd: sole owner of a file descriptor.
#pragma once

#include <unistd.h>

#include <utility>

namespace zt::io {

/// UniqueFd closes its descriptor when destroyed. It does not cancel io_uring
/// operations still using the descriptor: callers cancel those first.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  /// release gives up ownership without closing.
  int release() { return std::exchange(fd_, -1); }
  /// reset closes the current descriptor (if any) and takes `fd`.
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace zt::io
