// LocalConfigWatcher: hot reload of the local config file. Polled (stat) rather than
// inotify, so a Kubernetes ConfigMap update (a symlink swap) is seen like any write.
// A file that fails to parse is rejected once, and the previous state stays in force.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <memory>
#include <string>

#include "ztunnel/state/state.h"

namespace zt::config {

/// LocalConfigWatcher is used from one thread (the control thread).
class LocalConfigWatcher {
 public:
  /// Outcome of one Poll.
  enum class Outcome : uint8_t { kUnchanged, kReloaded, kRejected };

  /// `path` is watched from its current content on: call Poll to see changes.
  explicit LocalConfigWatcher(std::string path);

  /// Poll checks the file once. kReloaded: `*state` is the new snapshot to publish.
  /// kRejected: `*error` says why (the same bad file is reported once).
  Outcome Poll(std::shared_ptr<const state::State>* state, std::string* error);

  uint64_t reloads() const { return reloads_; }
  uint64_t rejects() const { return rejects_; }

 private:
  struct Signature {
    bool exists = false;
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    timespec mtime{};
    bool operator==(const Signature& o) const;
  };
  Signature Stat() const;

  std::string path_;
  Signature last_;
  uint64_t reloads_ = 0;
  uint64_t rejects_ = 0;
};

}  // namespace zt::config
