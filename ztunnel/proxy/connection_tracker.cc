#include "ztunnel/proxy/connection_tracker.h"

#include <vector>

namespace zt::proxy {

void ConnectionTracker::Add(TrackedConnection* conn) {
  conn->tracker_ = this;
  conn->prev_ = nullptr;
  conn->next_ = head_;
  if (head_ != nullptr) head_->prev_ = conn;
  head_ = conn;
  ++size_;
}

void ConnectionTracker::Remove(TrackedConnection* conn) {
  if (conn->tracker_ != this) return;
  if (conn->prev_ != nullptr) {
    conn->prev_->next_ = conn->next_;
  } else {
    head_ = conn->next_;
  }
  if (conn->next_ != nullptr) conn->next_->prev_ = conn->prev_;
  conn->prev_ = conn->next_ = nullptr;
  conn->tracker_ = nullptr;
  if (--size_ == 0 && on_empty_) on_empty_();
}

void ConnectionTracker::AbortAll() {
  // Abort may remove the connection synchronously or later: walk a snapshot.
  std::vector<TrackedConnection*> all;
  all.reserve(size_);
  for (TrackedConnection* c = head_; c != nullptr; c = c->next_) all.push_back(c);
  for (TrackedConnection* c : all) c->Abort();
}

size_t ConnectionTracker::AbortIf(const std::function<bool(int fd)>& pred) {
  std::vector<TrackedConnection*> matching;
  for (TrackedConnection* c = head_; c != nullptr; c = c->next_) {
    if (pred(c->SocketFd())) matching.push_back(c);
  }
  for (TrackedConnection* c : matching) c->Abort();
  return matching.size();
}

}  // namespace zt::proxy
