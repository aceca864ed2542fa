#include "ztunnel/control/control_plane.h"

#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <thread>

namespace zt::control {
namespace {

using namespace std::chrono_literals;

struct TempDir {
  std::filesystem::path dir;
  TempDir() {
    char tmpl[] = "/tmp/zt-cp-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(dir); }
};

void Write(const std::filesystem::path& p, const std::string& text) {
  const auto tmp = p.string() + ".tmp";  // write + rename: a new inode, as tools do
  std::ofstream(tmp) << text;
  std::filesystem::rename(tmp, p);
}

const char* kOne = R"(
workloads:
- {uid: a, name: a, namespace: ns1, serviceAccount: sa1, workloadIps: [10.0.0.1], node: n, protocol: HBONE}
)";
const char* kTwo = R"(
workloads:
- {uid: a, name: a, namespace: ns1, serviceAccount: sa1, workloadIps: [10.0.0.1], node: n, protocol: HBONE}
- {uid: b, name: b, namespace: ns2, serviceAccount: sa2, workloadIps: [10.0.0.2], node: n, protocol: HBONE}
)";

std::shared_ptr<identity::CaClient> OpenCa(const TempDir& t) {
  std::string why;
  auto ca = identity::LocalCa::Open({(t.dir / "ca").string(), true, "cluster.local", 3600s}, &why);
  if (!ca) throw std::runtime_error(why);
  return *ca;
}

// WaitFor polls `done` for up to 10 s: a liveness bound, not a timing assertion.
template <typename F>
bool WaitFor(F done) {
  for (int i = 0; i < 1000 && !done(); ++i) std::this_thread::sleep_for(10ms);
  return done();
}

TEST_CASE("ControlPlane publishes the config with its certificates, then follows the file",
          "[control]") {
  TempDir t;
  const auto file = t.dir / "mesh.yaml";
  Write(file, kOne);
  std::string error;
  auto cp = ControlPlane::Start({file.string(), "n"}, OpenCa(t), &error);
  REQUIRE(cp != nullptr);
  CHECK(cp->local_workloads() == 1);
  CHECK(cp->state().Load()->workloads().size() == 1);
  // Issued before the state was published: no connection waits with a local CA.
  const tls::SpiffeId sa1 = tls::SpiffeId::Make("", "ns1", "sa1");
  REQUIRE(cp->certs().Load()->Find(sa1) != nullptr);
  CHECK(cp->certs().Load()->Find(sa1)->cert != nullptr);

  std::atomic<int> states{0}, cert_sets{0}, applied{0}, rejected{0};
  cp->SetHooks({.config_reloaded = [&](bool ok) { ++(ok ? applied : rejected); },
                .state_published = [&] { ++states; },
                .certs_published = [&] { ++cert_sets; }});
  CHECK(states == 1);  // SetHooks catches the listener up once
  CHECK(cert_sets == 1);

  Write(file, kTwo);
  REQUIRE(WaitFor([&] { return cp->state().Load()->workloads().size() == 2; }));
  CHECK(applied == 1);
  CHECK(states == 2);
  const tls::SpiffeId sa2 = tls::SpiffeId::Make("", "ns2", "sa2");
  // The new workload's certificate was published before its state.
  REQUIRE(cp->certs().Load()->Find(sa2) != nullptr);
  CHECK(cp->certs().Load()->Find(sa2)->cert != nullptr);

  // A bad file is rejected once; the last good state keeps serving.
  Write(file, "workloads:\n- {name: a, workloadIps: [10.0.0.300]}\n");
  REQUIRE(WaitFor([&] { return rejected.load() == 1; }));
  CHECK(cp->state().Load()->workloads().size() == 2);

  // ReloadNow returns with the change published (the ZDS thread relies on it).
  Write(file, kOne);
  cp->ReloadNow();
  CHECK(cp->state().Load()->workloads().size() == 1);
  CHECK(cp->certs().Load()->Find(sa2) == nullptr);  // forgotten with its last workload
  cp->Stop();
  cp->Stop();  // idempotent
}

TEST_CASE("ControlPlane::Start names a bad config and starts nothing", "[control]") {
  TempDir t;
  const auto file = t.dir / "mesh.yaml";
  Write(file, "workloads:\n- {name: a, workloadIps: [nope]}\n");
  std::string error;
  auto cp = ControlPlane::Start({file.string(), "n"}, OpenCa(t), &error);
  CHECK(cp == nullptr);
  CHECK(error.find("invalid local config") != std::string::npos);
  CHECK(error.find("workloads[0].workloadIps[0]") != std::string::npos);
  cp = ControlPlane::Start({(t.dir / "missing.yaml").string(), "n"}, OpenCa(t), &error);
  CHECK(cp == nullptr);
  CHECK(error.find("missing.yaml") != std::string::npos);
}

}  // namespace
}  // namespace zt::control
