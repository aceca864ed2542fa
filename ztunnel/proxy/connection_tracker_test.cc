#include "ztunnel/proxy/connection_tracker.h"

#include <catch2/catch.hpp>
#include <vector>

namespace zt::proxy {
namespace {

// Fake is a tracked connection that removes itself when aborted, as real ones do.
struct Fake final : TrackedConnection {
  ConnectionTracker* tracker;
  int fd;
  bool aborted = false;
  Fake(ConnectionTracker* t, int f) : tracker(t), fd(f) { tracker->Add(this); }
  void Abort() override {
    aborted = true;
    tracker->Remove(this);
  }
  int SocketFd() const override { return fd; }
};

TEST_CASE("AbortIf aborts only the matching connections", "[proxy]") {
  ConnectionTracker tracker;
  std::vector<std::unique_ptr<Fake>> conns;
  for (int fd : {3, 4, 5, 6, -1}) conns.push_back(std::make_unique<Fake>(&tracker, fd));
  CHECK(tracker.AbortIf([](int fd) { return fd == 4 || fd == 6; }) == 2);
  CHECK(tracker.size() == 3);
  std::vector<bool> aborted;
  for (auto& c : conns) aborted.push_back(c->aborted);
  CHECK(aborted == std::vector<bool>{false, true, false, true, false});
  CHECK(tracker.AbortIf([](int) { return false; }) == 0);
  tracker.AbortAll();
  CHECK(tracker.size() == 0);
}

}  // namespace
}  // namespace zt::proxy
