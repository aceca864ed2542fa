// XdsClient against a scripted control plane on grpc-go (grpcpeer --ads-script): the
// responses a real istiod never sends (it filters bad input before emitting it), to
// show that a resource we cannot use is NACKed with its reason while the rest of the
// response applies, and that two workloads claiming one address is no reason to NACK.
// The normal flow runs against a real istiod in integration/kube/test_istiod.py.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "ztunnel/control/grpcpeer_test_util.h"
#include "ztunnel/control/xds_client.h"
#include "ztunnel/io/testing.h"
#include "ztunnel/xds/convert.h"
#include "ztunnel/xds/discovery.pb.h"

namespace zt::control {
namespace {

namespace fs = std::filesystem;
using envoy::service::discovery::v3::DeltaDiscoveryRequest;
using envoy::service::discovery::v3::DeltaDiscoveryResponse;
using io::testing::LoopThread;
using testing::GoPeer;

std::string Bytes(std::initializer_list<uint8_t> b) { return std::string(b.begin(), b.end()); }

void AddWorkload(DeltaDiscoveryResponse& r, const std::string& name, const std::string& ip) {
  istio::workload::Address a;
  auto* w = a.mutable_workload();
  w->set_uid(name);
  w->set_name(name.substr(name.rfind('/') + 1));
  w->set_namespace_("ns");
  w->set_node("node-a");
  w->set_tunnel_protocol(istio::workload::HBONE);
  w->add_addresses(ip);
  auto* res = r.add_resources();
  res->set_name(name);
  res->set_version("v-" + name);
  res->mutable_resource()->set_type_url(std::string(xds::kAddressType));
  res->mutable_resource()->set_value(a.SerializeAsString());
}

void AddPolicy(DeltaDiscoveryResponse& r, const std::string& name, int action) {
  istio::security::Authorization p;
  p.set_name(name);
  p.set_namespace_("ns");
  p.set_scope(istio::security::NAMESPACE);
  p.set_action(static_cast<istio::security::Action>(action));
  auto* res = r.add_resources();
  res->set_name("ns/" + name);
  res->mutable_resource()->set_type_url(std::string(xds::kAuthorizationType));
  res->mutable_resource()->set_value(p.SerializeAsString());
}

// Script writes the responses grpcpeer serves, in order.
struct Script {
  fs::path dir;
  int n = 0;
  Script() {
    char tmpl[] = "/tmp/zt-ads-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~Script() { fs::remove_all(dir); }
  void Add(DeltaDiscoveryResponse r) {
    char name[16];
    std::snprintf(name, sizeof(name), "%03d.bin", n++);
    std::ofstream(dir / name, std::ios::binary) << r.SerializeAsString();
  }
};

// NextRequest reads the next request the peer printed.
DeltaDiscoveryRequest NextRequest(GoPeer& peer) {
  const std::string line = peer.Line();
  REQUIRE(line.rfind("request ", 0) == 0);
  // Base64 decode (standard alphabet, padded).
  static const std::string kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : line.substr(8)) {
    if (c == '=') break;
    acc = (acc << 6) | static_cast<uint32_t>(kAlphabet.find(c));
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  DeltaDiscoveryRequest req;
  REQUIRE(req.ParseFromString(bytes));
  return req;
}

TEST_CASE("xDS: a bad resource is NACKed with its reason, the rest of the response applies",
          "[control][xds][interop]") {
  Script script;
  DeltaDiscoveryResponse r0;
  r0.set_type_url(std::string(xds::kAddressType));
  r0.set_nonce("n0");
  AddWorkload(r0, "Kubernetes//Pod/ns/a", Bytes({10, 0, 0, 1}));
  AddWorkload(r0, "Kubernetes//Pod/ns/bad", Bytes({10, 0, 0}));  // 3 bytes: not an IP
  script.Add(r0);
  DeltaDiscoveryResponse r1;
  r1.set_type_url(std::string(xds::kAuthorizationType));
  r1.set_nonce("n1");
  AddPolicy(r1, "good", istio::security::DENY);
  AddPolicy(r1, "future", 7);  // an action this build does not know: never an ALLOW
  script.Add(r1);
  DeltaDiscoveryResponse r2;  // a second workload on a's address, and a's removal later
  r2.set_type_url(std::string(xds::kAddressType));
  r2.set_nonce("n2");
  AddWorkload(r2, "Kubernetes//Pod/ns/c", Bytes({10, 0, 0, 1}));
  script.Add(r2);
  DeltaDiscoveryResponse r3;
  r3.set_type_url(std::string(xds::kAuthorizationType));
  r3.set_nonce("n3");
  AddPolicy(r3, "future", istio::security::ALLOW);  // fixed: now accepted
  script.Add(r3);

  GoPeer peer(script.dir.string());
  char tok[] = "/tmp/zt-token-XXXXXX";
  const int fd = ::mkstemp(tok);
  REQUIRE(::write(fd, "the-token\n", 10) == 10);
  ::close(fd);
  XdsOptions options;
  options.channel = peer.Options();
  options.token_path = tok;
  options.pod_name = "ztunnel-x";
  options.pod_namespace = "istio-system";
  options.instance_ip = "10.1.2.3";
  options.node_name = "node-a";
  options.metadata["CLUSTER_ID"] = "Kubernetes";
  LoopThread lt;
  std::mutex mu;
  std::vector<std::shared_ptr<const state::State>> published;
  std::unique_ptr<XdsClient> client;
  std::string error;
  lt.Run([&] {
    client = XdsClient::Create(
        lt.loop(), options,
        [&](std::shared_ptr<const state::State> s) {
          std::lock_guard lock(mu);
          published.push_back(std::move(s));
        },
        &error);
    REQUIRE(client != nullptr);
    client->Start();
  });
  // The initial requests: Address then Authorization, wildcard, with the node.
  const DeltaDiscoveryRequest first = NextRequest(peer);
  CHECK(first.type_url() == xds::kAddressType);
  CHECK(first.resource_names_subscribe_size() == 0);
  CHECK(first.node().id() ==
        "ztunnel~10.1.2.3~ztunnel-x.istio-system~istio-system.svc.cluster.local");
  CHECK(first.node().metadata().fields().at("NAMESPACE").string_value() == "istio-system");
  CHECK(first.node().metadata().fields().at("NODE_NAME").string_value() == "node-a");
  CHECK(first.node().metadata().fields().at("CLUSTER_ID").string_value() == "Kubernetes");
  const DeltaDiscoveryRequest second = NextRequest(peer);
  CHECK(second.type_url() == xds::kAuthorizationType);

  const DeltaDiscoveryRequest nack0 = NextRequest(peer);
  CHECK(nack0.response_nonce() == "n0");
  REQUIRE(nack0.has_error_detail());
  CHECK(nack0.error_detail().message() ==
        "Kubernetes//Pod/ns/bad: workload Kubernetes//Pod/ns/bad: addresses[0] is 3 bytes "
        "(0x0a0000), not an IPv4 or IPv6 address");
  const DeltaDiscoveryRequest nack1 = NextRequest(peer);
  CHECK(nack1.response_nonce() == "n1");
  REQUIRE(nack1.has_error_detail());
  CHECK(nack1.error_detail().message() == "ns/future: policy ns/future: unknown action 7");
  const DeltaDiscoveryRequest ack2 = NextRequest(peer);
  CHECK(ack2.response_nonce() == "n2");
  CHECK_FALSE(ack2.has_error_detail());  // a shared address is no reason to NACK
  const DeltaDiscoveryRequest ack3 = NextRequest(peer);
  CHECK(ack3.response_nonce() == "n3");
  CHECK_FALSE(ack3.has_error_detail());

  std::shared_ptr<const state::State> last;
  {
    std::lock_guard lock(mu);
    REQUIRE(published.size() == 4);
    // After the NACKed Address response: a applied, bad not.
    CHECK(published[0]->FindByUid("Kubernetes//Pod/ns/a") != nullptr);
    CHECK(published[0]->FindByUid("Kubernetes//Pod/ns/bad") == nullptr);
    // After the NACKed Authorization response: good applied, future not.
    CHECK(published[1]->FindPolicy("ns/good") != nullptr);
    CHECK(published[1]->FindPolicy("ns/future") == nullptr);
    last = published.back();
  }
  // The newest claimant of 10.0.0.1 has it; both workloads stay.
  const state::Workload* owner = last->FindWorkload("", *IpAddr::Parse("10.0.0.1"));
  REQUIRE(owner != nullptr);
  CHECK(owner->uid == "Kubernetes//Pod/ns/c");
  CHECK(last->FindByUid("Kubernetes//Pod/ns/a") != nullptr);
  CHECK(last->FindPolicy("ns/future") != nullptr);
  // Synced only once each type had a response accepted (not NACKed).
  CHECK(lt.Run([&] { return client->synced(); }));
  CHECK(lt.Run([&] { return client->stats().nacks; }) == 2);
  lt.Run([&] { client.reset(); });
  testing::Quiesce(lt);
  ::unlink(tok);
}

}  // namespace
}  // namespace zt::control
