#include "ztunnel/config/local_config_watcher.h"

#include <sys/stat.h>

#include "ztunnel/config/local_config.h"

namespace zt::config {

bool LocalConfigWatcher::Signature::operator==(const Signature& o) const {
  return exists == o.exists && dev == o.dev && ino == o.ino && size == o.size &&
         mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec;
}

LocalConfigWatcher::LocalConfigWatcher(std::string path) : path_(std::move(path)) {
  last_ = Stat();
}

LocalConfigWatcher::Signature LocalConfigWatcher::Stat() const {
  Signature s;
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return s;  // follows symlinks, as a swap needs
  s.exists = true;
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  s.size = st.st_size;
  s.mtime = st.st_mtim;
  return s;
}

LocalConfigWatcher::Outcome LocalConfigWatcher::Poll(std::shared_ptr<const state::State>* state,
                                                     std::string* error) {
  const Signature now = Stat();
  if (now == last_) return Outcome::kUnchanged;
  last_ = now;
  std::string why;
  auto next = LoadLocalConfig(path_, &why);
  if (!next) {
    ++rejects_;
    if (error != nullptr) *error = why;
    return Outcome::kRejected;
  }
  ++reloads_;
  *state = std::move(next);
  return Outcome::kReloaded;
}

}  // namespace zt::config
