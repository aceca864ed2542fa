// ConnectionTracker: the live connections of one worker, so a drain can wait for
// them and close the rest at its deadline.
#pragma once

#include <cstddef>
#include <functional>

namespace zt::proxy {

class ConnectionTracker;

/// TrackedConnection is anything the drain must wait for or abort.
class TrackedConnection {
 public:
  /// Abort ends the connection now (with RST): called at the drain deadline.
  virtual void Abort() = 0;
  /// SocketFd is the socket that says where the connection lives (its network
  /// namespace, in in-pod mode), or -1.
  virtual int SocketFd() const { return -1; }

 protected:
  ~TrackedConnection() = default;

 private:
  friend class ConnectionTracker;
  TrackedConnection* prev_ = nullptr;
  TrackedConnection* next_ = nullptr;
  ConnectionTracker* tracker_ = nullptr;
};

/// ConnectionTracker is an intrusive list: adding and removing allocate nothing.
/// Used on one loop thread only.
class ConnectionTracker {
 public:
  void Add(TrackedConnection* conn);
  void Remove(TrackedConnection* conn);
  size_t size() const { return size_; }
  /// AbortAll aborts every tracked connection (each removes itself when closed).
  void AbortAll();
  /// AbortIf aborts the tracked connections whose SocketFd satisfies `pred`; returns
  /// how many.
  size_t AbortIf(const std::function<bool(int fd)>& pred);
  /// OnEmpty runs `fn` whenever the last connection is removed.
  void OnEmpty(std::function<void()> fn) { on_empty_ = std::move(fn); }

 private:
  TrackedConnection* head_ = nullptr;
  size_t size_ = 0;
  std::function<void()> on_empty_;
};

}  // namespace zt::proxy
