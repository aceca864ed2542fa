// Interop: our gRPC client (h2::GrpcClient over control::GrpcChannel) against grpc-go,
// an implementation we did not write (integration/tools/grpcpeer). Unary and
// bidirectional streaming calls, trailers, error statuses, deadlines, a large
// message, keepalive, the server's certificate name, and reconnecting after the
// server goes away.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <vector>

#include "ztunnel/control/grpc_channel.h"
#include "ztunnel/control/grpcpeer_test_util.h"
#include "ztunnel/io/testing.h"

namespace zt::control {
namespace {

using io::testing::LoopThread;
using testing::GoPeer;
using namespace std::chrono_literals;

// Call records one call's events; Done waits for its end (from the test thread).
struct Call : h2::GrpcCallObserver {
  void OnHeaders(const h2::Metadata& h) override { headers = h; }
  void OnMessage(std::string m) override { messages.push_back(std::move(m)); }
  void OnClose(const h2::GrpcStatus& s, const h2::Metadata& t) override {
    status = s;
    trailers = t;
    closed.set_value();
  }
  bool Done(std::chrono::seconds within = 20s) {
    return closed_future.wait_for(within) == std::future_status::ready;
  }
  h2::Metadata headers, trailers;
  std::vector<std::string> messages;
  h2::GrpcStatus status;
  std::promise<void> closed;
  std::future<void> closed_future = closed.get_future();
};

// Nth is the stream test's i-th message (sizes 2 B to ~7 KiB).
std::string Nth(int i) {
  std::string s = "m";
  s += std::to_string(i);
  s.append(static_cast<size_t>(i) * 37, 'p');
  return s;
}

struct Fixture {
  GoPeer peer;
  LoopThread lt;
  std::unique_ptr<GrpcChannel> channel;
  explicit Fixture(GrpcChannelOptions (*tweak)(GrpcChannelOptions) = nullptr) {
    auto options = peer.Options();
    if (tweak != nullptr) options = tweak(options);
    std::string error;
    channel = lt.Run([&] { return GrpcChannel::Create(lt.loop(), options, &error); });
    REQUIRE(channel != nullptr);
  }
  ~Fixture() {
    lt.Run([&] { channel.reset(); });
    testing::Quiesce(lt);
  }
  // Unary runs one call with one message and a half-close.
  void Unary(Call& c, const std::string& method, const std::string& message, h2::Metadata md = {},
             std::optional<std::chrono::milliseconds> timeout = {}) {
    lt.Run([&] {
      auto id = channel->Start(method, std::move(md), &c, timeout);
      channel->Send(id, message);
      channel->CloseSend(id);
    });
  }
};

TEST_CASE("Interop with grpc-go: unary calls, metadata, trailers and statuses",
          "[control][grpc][interop]") {
  Fixture f;
  Call unary;
  f.Unary(unary, "/test.Echo/Unary", "hello");
  REQUIRE(unary.Done());
  CHECK(unary.status.ok());
  CHECK(unary.messages == std::vector<std::string>{"hello"});

  Call md;
  f.Unary(md, "/test.Echo/Metadata", "",
          {{"authorization", "Bearer tok"}, {"clusterid", "Kubernetes"}}, 5000ms);
  REQUIRE(md.Done());
  REQUIRE(md.messages.size() == 1);
  const std::string& json = md.messages[0];
  CHECK(json.find("\"authorization\":[\"Bearer tok\"]") != std::string::npos);
  CHECK(json.find("\"clusterid\":[\"Kubernetes\"]") != std::string::npos);
  CHECK(json.find("\"deadline\":true") != std::string::npos);  // grpc-timeout understood

  Call trailers;
  f.Unary(trailers, "/test.Echo/Trailers", "t");
  REQUIRE(trailers.Done());
  CHECK(trailers.status.ok());
  CHECK(trailers.messages == std::vector<std::string>{"t"});
  CHECK(std::find(trailers.headers.begin(), trailers.headers.end(),
                  std::pair<std::string, std::string>{"x-header", "h"}) != trailers.headers.end());
  CHECK(std::find(trailers.trailers.begin(), trailers.trailers.end(),
                  std::pair<std::string, std::string>{"x-trailer", "v"}) !=
        trailers.trailers.end());

  Call fail;
  f.Unary(fail, "/test.Echo/Fail", "");
  REQUIRE(fail.Done());
  CHECK(fail.status.code == h2::GrpcCode::kPermissionDenied);
  CHECK(fail.status.message == "denied: \xE2\x9C\x93 100%");

  Call unknown;
  f.Unary(unknown, "/test.Nope/Nope", "");
  REQUIRE(unknown.Done());
  CHECK(unknown.status.code == h2::GrpcCode::kUnimplemented);
  CHECK(f.lt.Run([&] { return f.channel->connects(); }) == 1);  // one connection for all
}

TEST_CASE("Interop with grpc-go: a bidirectional stream and a 16 MiB message",
          "[control][grpc][interop]") {
  Fixture f;
  Call stream;
  GrpcChannel::CallId id = 0;
  f.lt.Run([&] { id = f.channel->Start("/test.Echo/Stream", {}, &stream); });
  for (int i = 0; i < 200; ++i) {
    f.lt.Run([&] { f.channel->Send(id, Nth(i)); });
  }
  f.lt.Run([&] { f.channel->CloseSend(id); });
  REQUIRE(stream.Done());
  CHECK(stream.status.ok());
  REQUIRE(stream.messages.size() == 200);
  for (int i = 0; i < 200; ++i) {
    CHECK(stream.messages[static_cast<size_t>(i)] == Nth(i));
  }
  Call big;
  f.Unary(big, "/test.Echo/Big", std::to_string(16 << 20));
  REQUIRE(big.Done());
  CHECK(big.status.ok());
  REQUIRE(big.messages.size() == 1);
  CHECK(big.messages[0].size() == size_t{16} << 20);
  CHECK(big.messages[0][12345] == static_cast<char>('a' + 12345 % 26));
}

TEST_CASE("Interop with grpc-go: deadlines end the call, the connection stays",
          "[control][grpc][interop]") {
  Fixture f;
  Call slow;
  f.Unary(slow, "/test.Echo/Slow", "", {}, 300ms);
  REQUIRE(slow.Done());
  CHECK(slow.status.code == h2::GrpcCode::kDeadlineExceeded);
  Call after;
  f.Unary(after, "/test.Echo/Unary", "still here");
  REQUIRE(after.Done());
  CHECK(after.messages == std::vector<std::string>{"still here"});
  CHECK(f.lt.Run([&] { return f.channel->connects(); }) == 1);
}

TEST_CASE("Interop with grpc-go: keepalive PINGs are answered and keep the connection",
          "[control][grpc][interop]") {
  Fixture f([](GrpcChannelOptions o) {
    o.keepalive_interval = 50ms;
    o.keepalive_timeout = 2s;
    return o;
  });
  Call first;
  f.Unary(first, "/test.Echo/Unary", "a");
  REQUIRE(first.Done());
  std::this_thread::sleep_for(600ms);  // about ten PING rounds
  Call second;
  f.Unary(second, "/test.Echo/Unary", "b");
  REQUIRE(second.Done());
  CHECK(second.status.ok());
  CHECK(f.lt.Run([&] { return f.channel->connects(); }) == 1);
}

TEST_CASE("Interop with grpc-go: a server certificate for another name is refused",
          "[control][grpc][interop]") {
  Fixture f([](GrpcChannelOptions o) {
    o.server_name = "istiod.istio-system.svc";
    return o;
  });
  Call c;
  f.Unary(c, "/test.Echo/Unary", "x");
  REQUIRE(c.Done());
  CHECK(c.status.code == h2::GrpcCode::kUnavailable);
  CHECK(c.status.message.find("does not name istiod.istio-system.svc") != std::string::npos);
}

TEST_CASE("Interop with grpc-go: a lost server fails open calls, and the next call reports why",
          "[control][grpc][interop]") {
  auto peer = std::make_unique<GoPeer>();
  LoopThread lt;
  std::string error;
  auto channel = lt.Run([&] { return GrpcChannel::Create(lt.loop(), peer->Options(), &error); });
  REQUIRE(channel != nullptr);
  Call open;
  lt.Run([&] { channel->Start("/test.Echo/Stream", {}, &open); });
  Call ok;
  lt.Run([&] {
    auto id = channel->Start("/test.Echo/Unary", {}, &ok);
    channel->Send(id, "x");
    channel->CloseSend(id);
  });
  REQUIRE(ok.Done());
  peer->Kill();
  REQUIRE(open.Done());
  CHECK(open.status.code == h2::GrpcCode::kUnavailable);
  // Nothing listens any more: the next call fails to connect, with the reason.
  Call refused;
  lt.Run([&] {
    auto id = channel->Start("/test.Echo/Unary", {}, &refused);
    channel->CloseSend(id);
  });
  REQUIRE(refused.Done());
  CHECK(refused.status.code == h2::GrpcCode::kUnavailable);
  CHECK(refused.status.message.find("cannot connect") != std::string::npos);
  lt.Run([&] { channel.reset(); });
  testing::Quiesce(lt);
}

}  // namespace
}  // namespace zt::control
