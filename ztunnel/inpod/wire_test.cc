#include "ztunnel/inpod/wire.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "ztunnel/io/netns.h"

namespace zt::inpod {
namespace {

struct Pair {
  io::UniqueFd a, b;
  Pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0);
    a.reset(fds[0]);
    b.reset(fds[1]);
  }
};

TEST_CASE("ZDS messages keep the wire facts", "[zds]") {
  // Field numbers are the compatibility contract (DESIGN.md §4): check the bytes.
  zds::ZdsHello hello;
  hello.set_version(zds::V1);
  CHECK(hello.SerializeAsString() == std::string("\x08\x01", 2));
  zds::WorkloadRequest del;
  del.mutable_del()->set_uid("u");
  CHECK(del.SerializeAsString() == std::string("\x12\x03\x12\x01u", 5));  // del=2 { uid=2 }
  zds::WorkloadRequest keep;
  keep.mutable_keep()->set_uid("u");
  CHECK(keep.SerializeAsString() == std::string("\x2a\x03\x0a\x01u", 5));  // keep=5 { uid=1 }
  zds::WorkloadRequest snapshot;
  snapshot.mutable_snapshot_sent();
  CHECK(snapshot.SerializeAsString() == std::string("\x1a\x00", 2));
  zds::WorkloadRequest add;
  add.mutable_add()->set_uid("u");
  add.mutable_add()->mutable_workload_info()->set_namespace_("n");
  CHECK(add.SerializeAsString() == std::string("\x0a\x08\x0a\x01u\x12\x03\x12\x01n", 10));
  zds::WorkloadResponse ack;
  ack.mutable_ack()->set_error("no");
  CHECK(ack.SerializeAsString() == std::string("\x0a\x04\x0a\x02no", 6));
}

TEST_CASE("A request travels with its namespace descriptor", "[zds]") {
  Pair p;
  io::UniqueFd own(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  REQUIRE(own.valid());
  zds::WorkloadRequest add;
  add.mutable_add()->set_uid("pod-1");
  add.mutable_add()->mutable_workload_info()->set_name("web");
  add.mutable_add()->mutable_workload_info()->set_namespace_("shop");
  add.mutable_add()->mutable_workload_info()->set_service_account("web-sa");
  std::string error;
  REQUIRE(SendMessage(p.a.get(), add, own.get(), &error));
  Datagram d;
  REQUIRE(ReceiveDatagram(p.b.get(), &d, &error) == Receive::kOk);
  REQUIRE(d.fds.size() == 1);
  CHECK(io::IsNetns(d.fds[0].get()));
  zds::WorkloadRequest got;
  REQUIRE(got.ParseFromString(d.bytes));
  CHECK(Describe(got) == "add uid=pod-1 name=shop/web sa=web-sa");
}

TEST_CASE("Bad datagrams are refused with a reason", "[zds]") {
  Pair p;
  std::string error;
  Datagram d;
  SECTION("too large") {
    REQUIRE(SendDatagram(p.a.get(), std::string(kMaxDatagram + 10, 'x'), -1, &error));
    CHECK(ReceiveDatagram(p.b.get(), &d, &error) == Receive::kBad);
    CHECK(error == "message larger than 65536 bytes");
  }
  SECTION("two descriptors arrive as two, for the caller to refuse") {
    io::UniqueFd one(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    io::UniqueFd two(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    const int fds[2] = {one.get(), two.get()};
    REQUIRE(SendDatagram(p.a.get(), "x", fds, &error));
    CHECK(ReceiveDatagram(p.b.get(), &d, &error) == Receive::kOk);
    CHECK(d.fds.size() == 2);
  }
  SECTION("the peer hangs up") {
    p.a.reset();
    CHECK(ReceiveDatagram(p.b.get(), &d, &error) == Receive::kClosed);
  }
  SECTION("garbage does not parse") {
    REQUIRE(SendDatagram(p.a.get(), "\xff\xff\xff", -1, &error));
    REQUIRE(ReceiveDatagram(p.b.get(), &d, &error) == Receive::kOk);
    zds::WorkloadRequest r;
    CHECK_FALSE(r.ParseFromString(d.bytes));
  }
}

}  // namespace
}  // namespace zt::inpod
