#include "ztunnel/proxy/pool.h"

#include <algorithm>

#include "ztunnel/core/log.h"
#include "ztunnel/io/fiber.h"
#include "ztunnel/io/netns.h"
#include "ztunnel/proxy/upstream.h"

namespace zt::proxy {

std::string PoolKey::ToString() const {
  std::vector<std::string> ids;
  for (const auto& id : expected) ids.push_back(id.ToString());
  std::sort(ids.begin(), ids.end());
  std::string out = source.ToString() + "|" + destination.ToString() + "|";
  if (netns >= 0) out += "netns:" + std::to_string(io::InodeOf(netns)) + "|";
  for (const auto& id : ids) out += id + ",";
  return out;
}

Pool::Pool(io::Loop& loop, PoolOptions options, ConnectionTracker* tracker)
    : loop_(loop), options_(std::move(options)), tracker_(tracker), sweep_(loop) {}

Pool::~Pool() { CloseAll(); }

bool Pool::HasRoom(const Entry& e) const {
  if (!e.ready || e.conn == nullptr) return false;
  h2::Session& s = e.conn->h2();
  const size_t limit = std::min<size_t>(options_.max_streams, s.peer_max_streams());
  return s.can_open() && s.active_streams() < limit;
}

void Pool::Wake(const std::shared_ptr<Entry>& e) {
  e->done = true;
  auto waiters = std::move(e->waiters);
  e->waiters.clear();
  // Resume from the loop, not from inside the connection's callbacks.
  loop_.Defer([waiters] {
    for (io::Fiber* f : waiters) f->Resume();
  });
}

Result<HboneConnection*> Pool::Acquire(const PoolKey& key,
                                       const std::shared_ptr<tls::TlsContext>& client_ctx,
                                       std::string* error) {
  const std::string k = key.ToString();
  for (int attempt = 0; attempt < 8; ++attempt) {
    if (closing_) return Error{Errc::kCancelled};
    std::shared_ptr<Entry> pending;
    auto [lo, hi] = by_key_.equal_range(k);
    for (auto it = lo; it != hi; ++it) {
      if (HasRoom(*it->second)) return it->second->conn;
      if (!it->second->done) pending = it->second;
    }
    if (pending == nullptr) {
      // Nothing usable, nothing on the way: open a new connection.
      pending = std::make_shared<Entry>();
      pending->key = k;
      by_key_.emplace(k, pending);
      auto sock = ConnectUpstream(loop_, key.destination,
                                  {options_.mark, options_.connect_timeout, options_.keepalive,
                                   key.netns, options_.limiter, key.source.ToString()},
                                  nullptr);
      const Status connected = sock ? Status::Ok() : Status(sock.error());
      if (!connected) {
        Unlist(pending);
        pending->error =
            "connect to " + key.destination.ToString() + ": " + connected.error().Message();
        Wake(pending);
        if (error != nullptr) *error = pending->error;
        return connected.error();
      }
      std::weak_ptr<Entry> weak = pending;
      std::weak_ptr<int> life = life_;
      pending->conn = HboneConnection::StartClient(
          loop_, std::move(sock).value(), client_ctx, key.expected, tracker_,
          {.ready =
               [this, weak, life](HboneConnection*) {
                 if (life.expired()) return;
                 if (auto e = weak.lock()) {
                   e->ready = true;
                   Wake(e);
                 }
               },
           .closed =
               [this, weak, life](HboneConnection* c, const std::string& why) {
                 if (life.expired()) return;
                 auto e = weak.lock();
                 entries_.erase(c);
                 if (e == nullptr) return;
                 Unlist(e);
                 e->conn = nullptr;
                 e->ready = false;
                 e->error = why.empty() ? "connection closed" : why;
                 Wake(e);
               }},
          options_.timeouts);
      if (pending->conn != nullptr) entries_[pending->conn] = pending;
      ArmSweep();
    }
    // Wait for the pending connection to become ready (or fail), then look again.
    if (!pending->done) {
      pending->waiters.push_back(io::Fiber::Current());
      while (!pending->done) io::Fiber::Current()->Suspend();
    }
    if (!pending->ready) {
      if (error != nullptr) *error = pending->error;
      return Error{Errc::kUnavailable};
    }
  }
  if (error != nullptr) *error = "no pooled connection with room after several attempts";
  return Error{Errc::kResourceExhausted};
}

void Pool::Unlist(const std::shared_ptr<Entry>& e) {
  for (auto it = by_key_.lower_bound(e->key); it != by_key_.end() && it->first == e->key; ++it) {
    if (it->second == e) {
      by_key_.erase(it);
      return;
    }
  }
}

void Pool::ArmSweep() {
  if (sweep_.pending() || closing_ || entries_.empty()) return;
  const auto period = std::max(options_.idle_timeout / 4, std::chrono::milliseconds(10));
  sweep_.Start(period, [this](bool fired) {
    if (fired) Sweep();
  });
}

void Pool::Sweep() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<HboneConnection*> idle;
  for (auto& [conn, e] : entries_) {
    if (!e->ready) continue;
    if (conn->h2().active_streams() > 0) {
      e->idle_since = {};
    } else if (e->idle_since == std::chrono::steady_clock::time_point{}) {
      e->idle_since = now;
    } else if (now - e->idle_since >= options_.idle_timeout) {
      idle.push_back(conn);
    }
  }
  for (HboneConnection* c : idle) {
    ZT_DEBUG("proxy", "releasing idle HBONE connection to {}", c->peer().ToString());
    c->Close(h2::kNoError, "");
  }
  ArmSweep();
}

void Pool::CloseAll() {
  closing_ = true;
  sweep_.Cancel();
  std::vector<HboneConnection*> all;
  for (auto& [conn, e] : entries_) all.push_back(conn);
  for (HboneConnection* c : all)
    c->Close(h2::kCancel, c->h2().active_streams() > 0 ? "pool shutting down" : "");
}

}  // namespace zt::proxy
