#include "ztunnel/inpod/zds_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "ztunnel/io/netns.h"

namespace zt::inpod {
namespace {

// Recorder is a handler that remembers calls; pods it does not know are an error.
struct Recorder : ZdsHandler {
  std::mutex mu;
  std::set<std::string> pods;
  std::vector<std::string> calls;
  std::set<std::string> snapshot;
  std::string AddPod(const PodInfo& pod, io::UniqueFd netns) override {
    std::lock_guard lock(mu);
    calls.push_back("add " + pod.uid + " " + pod.namespace_name + "/" + pod.name + " " +
                    pod.service_account + (io::IsNetns(netns.get()) ? " netns" : " ?"));
    pods.insert(pod.uid);
    return "";
  }
  std::string KeepPod(const std::string& uid) override {
    std::lock_guard lock(mu);
    calls.push_back("keep " + uid);
    return pods.count(uid) ? "" : "unknown workload uid " + uid;
  }
  std::string DelPod(const std::string& uid) override {
    std::lock_guard lock(mu);
    calls.push_back("del " + uid);
    return pods.erase(uid) ? "" : "unknown workload uid " + uid;
  }
  void SnapshotDone(const std::set<std::string>& uids) override {
    std::lock_guard lock(mu);
    calls.push_back("snapshot-done");
    snapshot = uids;
  }
  std::vector<bool> connected;  // each Connected call
  void Connected(bool up) override {
    std::lock_guard lock(mu);
    connected.push_back(up);
  }
};

// FakeAgent listens where the client connects and plays the agent's side.
struct FakeAgent {
  std::string path;
  io::UniqueFd listen, conn;
  FakeAgent() {
    path = (std::filesystem::temp_directory_path() /
            ("zds-test-" + std::to_string(::getpid()) + ".sock"))
               .string();
    ::unlink(path.c_str());
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    listen.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    REQUIRE(::bind(listen.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(listen.get(), 4) == 0);
  }
  ~FakeAgent() { ::unlink(path.c_str()); }
  // Accept takes the client's connection and checks its hello.
  void Accept() {
    pollfd p{listen.get(), POLLIN, 0};
    REQUIRE(::poll(&p, 1, 5000) == 1);
    conn.reset(::accept4(listen.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(conn.valid());
    Datagram d;
    std::string error;
    REQUIRE(ReceiveDatagram(conn.get(), &d, &error) == Receive::kOk);
    CHECK(d.bytes == std::string("\x08\x01", 2));  // ZdsHello{V1}
  }
  // Send sends raw bytes with `fds` and returns the ack's error text.
  std::string Send(const std::string& bytes, std::vector<int> fds = {}) {
    std::string error;
    REQUIRE(SendDatagram(conn.get(), bytes, fds, &error));
    Datagram d;
    REQUIRE(ReceiveDatagram(conn.get(), &d, &error) == Receive::kOk);
    zds::WorkloadResponse r;
    REQUIRE(r.ParseFromString(d.bytes));
    REQUIRE(r.has_ack());
    return r.ack().error();
  }
  std::string Send(const zds::WorkloadRequest& req, std::vector<int> fds = {}) {
    return Send(req.SerializeAsString(), std::move(fds));
  }
};

zds::WorkloadRequest Add(const std::string& uid) {
  zds::WorkloadRequest r;
  r.mutable_add()->set_uid(uid);
  r.mutable_add()->mutable_workload_info()->set_name("web");
  r.mutable_add()->mutable_workload_info()->set_namespace_("shop");
  r.mutable_add()->mutable_workload_info()->set_service_account("web-sa");
  return r;
}

struct Running {
  Recorder handler;
  FakeAgent agent;
  ZdsClient client{agent.path, handler};
  std::thread thread{[this] { client.Run(); }};
  ~Running() {
    client.Stop();
    thread.join();
  }
};

TEST_CASE("ZDS client: snapshot, acks and the set of enrolled pods", "[zds]") {
  Running r;
  r.agent.Accept();
  io::UniqueFd ns(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  CHECK(r.agent.Send(Add("u1"), {ns.get()}).empty());
  zds::WorkloadRequest keep;
  keep.mutable_keep()->set_uid("u2");
  CHECK(r.agent.Send(keep) == "unknown workload uid u2");
  CHECK_FALSE(r.client.synced());
  zds::WorkloadRequest done;
  done.mutable_snapshot_sent();
  CHECK(r.agent.Send(done).empty());
  CHECK(r.client.synced());
  zds::WorkloadRequest del;
  del.mutable_del()->set_uid("u1");
  CHECK(r.agent.Send(del).empty());
  std::lock_guard lock(r.handler.mu);
  CHECK(r.handler.calls == std::vector<std::string>{"add u1 shop/web web-sa netns", "keep u2",
                                                    "snapshot-done", "del u1"});
  CHECK(r.handler.snapshot == std::set<std::string>{"u1"});
}

TEST_CASE("ZDS client: each bad request is NACKed with its reason", "[zds]") {
  Running r;
  r.agent.Accept();
  io::UniqueFd ns(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  io::UniqueFd ns2(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  io::UniqueFd not_ns(::open("/proc/self/stat", O_RDONLY | O_CLOEXEC));
  CHECK(r.agent.Send(std::string("\xff\xff\xff", 3)) ==
        "cannot parse the message as a WorkloadRequest");
  CHECK(r.agent.Send(std::string("\x22\x00", 2)) == "a WorkloadRequest with no known payload");
  CHECK(r.agent.Send(Add("u1")) ==
        "AddWorkload for u1 came with 0 file descriptors; expected exactly 1 (the pod's "
        "network namespace)");
  CHECK(r.agent.Send(Add("u1"), {ns.get(), ns2.get()}) ==
        "AddWorkload for u1 came with 2 file descriptors; expected exactly 1 (the pod's "
        "network namespace)");
  CHECK(r.agent.Send(Add("u1"), {not_ns.get()}) ==
        "the descriptor sent with AddWorkload for u1 is not a network namespace");
  CHECK(r.agent.Send(Add(""), {ns.get()}) == "AddWorkload without a uid");
  zds::WorkloadRequest del;
  del.mutable_del()->set_uid("nobody");
  CHECK(r.agent.Send(del) == "unknown workload uid nobody");
  CHECK(r.agent.Send(del, {ns.get()}) ==
        "1 file descriptor(s) sent with \"del uid=nobody\", which takes none");
  // None of that reached the handler or broke the connection: a good Add still works.
  CHECK(r.agent.Send(Add("u1"), {ns.get()}).empty());
  std::lock_guard lock(r.handler.mu);
  CHECK(r.handler.calls == std::vector<std::string>{"del nobody", "add u1 shop/web web-sa netns"});
}

TEST_CASE("ZDS client: reconnects and says hello again when the agent goes away", "[zds]") {
  Running r;
  r.agent.Accept();
  r.agent.conn.reset();  // the agent restarts
  r.agent.Accept();      // the client is back, with a hello
  CHECK(r.client.connections() == 2);
  zds::WorkloadRequest done;
  done.mutable_snapshot_sent();
  CHECK(r.agent.Send(done).empty());
  // Down when the first connection ended (it had no snapshot), up after the second's.
  std::lock_guard lock(r.handler.mu);
  CHECK(r.handler.connected == std::vector<bool>{false, true});
}

}  // namespace
}  // namespace zt::inpod
