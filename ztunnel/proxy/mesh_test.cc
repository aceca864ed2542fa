#include "ztunnel/proxy/mesh.h"

#include <catch2/catch.hpp>
#include <regex>

namespace zt::proxy {
namespace {

TEST_CASE("Baggage is what Istio's ztunnel sends for a workload", "[proxy]") {
  // Regression (issue 15, defect 11): we sent k8s.pod.name, Istio sends
  // k8s.<workload type>.name=<workload name> plus cluster, service, version, locality.
  state::Workload w;
  w.name = "reviews-v2-5d8f7b-abcde";
  w.namespace_name = "bookinfo";
  w.cluster_id = "Kubernetes";
  w.workload_name = "reviews-v2";
  w.canonical_name = "reviews";
  w.canonical_revision = "v2";
  w.region = "eu-west1";
  w.zone = "eu-west1-b";
  CHECK(Baggage(w) ==
        "k8s.cluster.name=Kubernetes,k8s.namespace.name=bookinfo,k8s.deployment.name=reviews-v2,"
        "service.name=reviews,service.version=v2,cloud.region=eu-west1,"
        "cloud.availability_zone=eu-west1-b");
  w.workload_type = "cronjob";
  w.region.clear();
  w.zone.clear();
  w.canonical_revision.clear();
  CHECK(Baggage(w) ==
        "k8s.cluster.name=Kubernetes,k8s.namespace.name=bookinfo,k8s.cronjob.name=reviews-v2,"
        "service.name=reviews");
  state::Workload bare;
  bare.namespace_name = "default";
  CHECK(Baggage(bare) == "k8s.namespace.name=default");  // only what is known
}

// Found by fuzz/local_config_fuzz.cc: config strings went into the header raw, so a
// space, a comma or a control byte made a baggage header the peer refuses (and with
// it the CONNECT) or one that reads as another member.
TEST_CASE("Baggage values are percent-encoded where W3C baggage needs it", "[proxy]") {
  state::Workload w;
  w.namespace_name = "a b,c=d;e\\f\"g%h";
  w.canonical_name = "caf\xc3\xa9\r\n";
  CHECK(Baggage(w) ==
        "k8s.namespace.name=a%20b%2Cc=d%3Be%5Cf%22g%25h,service.name=caf%C3%A9%0D%0A");
}

TEST_CASE("A CONNECT carries Istio's headers: not-sampled traceparent, forwarded", "[proxy]") {
  state::Workload src;
  src.namespace_name = "shop";
  src.workload_name = "web";
  const auto r =
      MakeConnectRequest(&src, *IpPort::Parse("10.0.0.1:40000"), *IpPort::Parse("10.0.0.2:8080"));
  CHECK(r.authority.ToString() == "10.0.0.2:8080");
  CHECK(r.baggage == "k8s.namespace.name=shop,k8s.deployment.name=web");
  CHECK(r.forwarded == "for=\"10.0.0.1:40000\"");
  CHECK(std::regex_match(r.traceparent, std::regex("00-[0-9a-f]{32}-[0-9a-f]{16}-00")));
  const auto again =
      MakeConnectRequest(&src, *IpPort::Parse("10.0.0.1:40000"), *IpPort::Parse("10.0.0.2:8080"));
  CHECK(again.traceparent != r.traceparent);  // a fresh trace per connection
}

}  // namespace
}  // namespace zt::proxy
