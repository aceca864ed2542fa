#include "ztunnel/iptables/rules.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace zt::iptables {
namespace {

// Golden compares `text` with testdata/<name>.golden; ZTUNNEL_UPDATE_GOLDEN=1 rewrites
// the file instead (then review the diff like any other change).
void Golden(const std::string& name, const std::string& text) {
  const std::string path =
      std::string(ZTUNNEL_SOURCE_DIR "/ztunnel/iptables/testdata/") + name + ".golden";
  if (std::getenv("ZTUNNEL_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path) << text;
  }
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream want;
  want << in.rdbuf();
  INFO("golden " << path << " (ZTUNNEL_UPDATE_GOLDEN=1 rewrites it)");
  CHECK(text == want.str());
}

std::vector<Jump> AllJumps() { return {Jumps().begin(), Jumps().end()}; }
std::vector<Chain> AllChains() { return {Chains().begin(), Chains().end()}; }

TEST_CASE("In-pod rules for a fresh namespace match the goldens", "[iptables]") {
  Golden("install_ipv4", InstallInput(Family::kIpv4, {}, AllJumps()));
  Golden("install_ipv6", InstallInput(Family::kIpv6, {}, AllJumps()));
  Golden("install_ipv4_dns", InstallInput(Family::kIpv4, {.dns_capture = true}, AllJumps()));
  Golden("install_ipv6_dns", InstallInput(Family::kIpv6, {.dns_capture = true}, AllJumps()));
  Golden("remove_all", RemovalInput(AllJumps(), AllChains()));
}

TEST_CASE("Reinstalling adds no jump twice and refills the chains", "[iptables]") {
  const std::string again = InstallInput(Family::kIpv4, {}, {});
  CHECK(again.find("-A PREROUTING") == std::string::npos);
  CHECK(again.find("-A OUTPUT") == std::string::npos);
  // The chains are declared (created or emptied) and filled again.
  CHECK(again.find(":ISTIO_OUTPUT - [0:0]") != std::string::npos);
  CHECK(again.find("--to-ports 15001") != std::string::npos);
}

TEST_CASE("The rules keep their order where order matters", "[iptables]") {
  for (Family f : {Family::kIpv4, Family::kIpv6}) {
    const std::string r = InstallInput(f, {.dns_capture = true}, AllJumps());
    // Inbound: probes, 15008 and our own mark return before the 15006 redirect.
    const size_t probe = r.find("-A ISTIO_PRERT -s ");
    const size_t hbone = r.find("--dport 15008 -j RETURN");
    const size_t own_in = r.find("-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j RETURN");
    const size_t redirect_in = r.find("--to-ports 15006");
    REQUIRE(redirect_in != std::string::npos);
    CHECK(probe < redirect_in);
    CHECK(hbone < redirect_in);
    CHECK(own_in < redirect_in);
    // Outbound: our own mark returns, DNS goes to 15053 before TCP goes to 15001.
    const size_t own_out = r.find("-A ISTIO_OUTPUT -m mark --mark 0x539/0xfff -j RETURN");
    const size_t dns = r.find("--dport 53 -j REDIRECT --to-ports 15053");
    const size_t redirect_out = r.find("--to-ports 15001");
    REQUIRE(redirect_out != std::string::npos);
    CHECK(own_out < redirect_out);
    CHECK(dns < redirect_out);
    // Loopback destinations are never captured.
    CHECK(r.find(f == Family::kIpv4
                     ? "! -d 127.0.0.1/32 -p tcp -j REDIRECT --to-ports 15001"
                     : "! -d ::1/128 -p tcp -j REDIRECT --to-ports 15001") != std::string::npos);
  }
}

TEST_CASE("Removal deletes only what is present", "[iptables]") {
  CHECK(RemovalInput({}, {}).empty());
  const std::string nat_only =
      RemovalInput({{"nat", "OUTPUT", "ISTIO_OUTPUT"}}, {{"nat", "ISTIO_OUTPUT"}});
  CHECK(nat_only == "*nat\n-D OUTPUT -j ISTIO_OUTPUT\n-F ISTIO_OUTPUT\n-X ISTIO_OUTPUT\nCOMMIT\n");
}

}  // namespace
}  // namespace zt::iptables
