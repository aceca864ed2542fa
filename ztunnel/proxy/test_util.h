// Shared helpers for proxy tests: a socket pair, blocking readers and writers with
// random sizes over a checkable byte stream, and an echo server on its own loop.
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ztunnel/io/fiber.h"
#include "ztunnel/io/ops.h"
#include "ztunnel/io/socket.h"
#include "ztunnel/io/testing.h"

namespace zt::proxy::testing {

using io::UniqueFd;
using io::testing::BlockingConnect;
using io::testing::Listener;
using io::testing::ListenLoopback;
using io::testing::LoopThread;

// ConnectedPair returns {connecting end, accepted end} over loopback.
inline std::pair<UniqueFd, UniqueFd> ConnectedPair() {
  auto l = io::Listen(io::SocketAddress::Loopback4(0), {});
  REQUIRE(l.ok());
  UniqueFd near = BlockingConnect(*io::LocalAddress(l->get()));
  UniqueFd far(::accept4(l->get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(far.valid());
  return {std::move(near), std::move(far)};
}

// AcceptWithin waits (poll) up to `timeout_ms` for a connection on a non-blocking
// listener and accepts it; invalid on timeout.
inline UniqueFd AcceptWithin(int listen_fd, int timeout_ms = 5000) {
  pollfd p{listen_fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return UniqueFd();
  return UniqueFd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
}

inline void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    REQUIRE(n > 0);
    data.remove_prefix(static_cast<size_t>(n));
  }
}

inline std::string ReadToEof(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    REQUIRE(n >= 0);
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// Stream is a deterministic byte stream, so the reader can check without a copy.
inline char StreamByte(uint64_t seed, uint64_t i) {
  uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
  x ^= x >> 29;
  return static_cast<char>(x * 0xBF58476D1CE4E5B9ull >> 56);
}

// WriteRandomSizes writes `total` bytes of the stream in chunks of 0..64 KiB, then FIN.
inline void WriteRandomSizes(int fd, uint64_t seed, size_t total) {
  std::mt19937_64 rng(seed);
  std::string chunk;
  size_t sent = 0;
  while (sent < total) {
    const size_t n = std::min<size_t>(rng() % (64 * 1024 + 1), total - sent);
    chunk.resize(n);
    for (size_t i = 0; i < n; ++i) chunk[i] = StreamByte(seed, sent + i);
    WriteAll(fd, chunk);
    sent += n;
  }
  ::shutdown(fd, SHUT_WR);
}

// ReadRandomSizes reads in chunks of 1..64 KiB to EOF; returns bytes that matched the
// stream in order (stops counting at the first mismatch).
inline size_t ReadRandomSizes(int fd, uint64_t seed) {
  std::mt19937_64 rng(seed * 7 + 1);
  std::vector<char> buf(64 * 1024);
  size_t good = 0;
  bool mismatch = false;
  for (;;) {
    const size_t want = 1 + rng() % buf.size();
    const ssize_t n = ::recv(fd, buf.data(), want, 0);
    if (n <= 0) break;
    for (ssize_t i = 0; i < n && !mismatch; ++i) {
      if (buf[static_cast<size_t>(i)] != StreamByte(seed, good)) {
        mismatch = true;
      } else {
        ++good;
      }
    }
  }
  return good;
}

// EchoServer echoes every connection to EOF on fibers of its own loop.
class EchoServer {
 public:
  // A production-sized backlog: tests open many connections at once, and a full SYN
  // queue would turn into multi-second retransmits, not what a test is about.
  EchoServer() : listener_(ListenLoopback(4096)) {
    lt_.Run([this] {
      accept_ = std::make_unique<io::MultishotAccept>(lt_.loop(), listener_.fd.get());
      io::testing::SpawnOrDie(lt_.loop(), [this] {
        for (;;) {
          auto conn = accept_->Next();
          if (!conn) break;
          io::testing::SpawnOrDie(lt_.loop(), [this, fd = conn->release()] { Echo(UniqueFd(fd)); });
        }
        stopped_.set_value();
      });
    });
  }
  ~EchoServer() {
    lt_.Run([this] { accept_->Stop(); });
    stopped_.get_future().wait();
  }
  const io::SocketAddress& addr() const { return listener_.addr; }

 private:
  void Echo(UniqueFd fd) {
    char buf[16 * 1024];
    for (;;) {
      auto n = io::Recv(lt_.loop(), fd.get(), buf);
      if (!n || *n == 0) break;
      if (!io::SendAll(lt_.loop(), fd.get(), {buf, *n})) return;
    }
    ::shutdown(fd.get(), SHUT_WR);
  }

  LoopThread lt_;
  Listener listener_;
  std::unique_ptr<io::MultishotAccept> accept_;
  std::promise<void> stopped_;
};

}  // namespace zt::proxy::testing
