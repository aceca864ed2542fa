#include "ztunnel/config/local_config_watcher.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

namespace zt::config {
namespace {

using Outcome = LocalConfigWatcher::Outcome;

struct TempDir {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("zt-watch-" + std::to_string(::getpid()) + "-" +
                                                std::to_string(reinterpret_cast<uintptr_t>(this)));
  TempDir() { std::filesystem::create_directories(dir); }
  ~TempDir() { std::filesystem::remove_all(dir); }
};

void Write(const std::filesystem::path& p, const std::string& text) {
  // Replace atomically (write + rename), as config management tools do.
  const auto tmp = p.string() + ".tmp";
  std::ofstream(tmp) << text;
  std::filesystem::rename(tmp, p);
}

TEST_CASE("The config watcher reloads changed files and rejects bad ones once", "[config]") {
  TempDir t;
  const auto file = t.dir / "mesh.yaml";
  Write(file, "workloads:\n- {name: a, workloadIps: [10.0.0.1]}\n");
  LocalConfigWatcher w(file.string());
  std::shared_ptr<const state::State> s;
  std::string error;
  CHECK(w.Poll(&s, &error) == Outcome::kUnchanged);

  Write(file,
        "workloads:\n- {name: a, workloadIps: [10.0.0.1]}\n- {name: b, workloadIps: "
        "[10.0.0.2]}\n");
  REQUIRE(w.Poll(&s, &error) == Outcome::kReloaded);
  CHECK(s->workloads().size() == 2);
  CHECK(w.Poll(&s, &error) == Outcome::kUnchanged);

  Write(file, "workloads:\n- {name: a, workloadIps: [10.0.0.300]}\n");
  s.reset();
  REQUIRE(w.Poll(&s, &error) == Outcome::kRejected);
  CHECK(s == nullptr);  // the caller keeps what it has
  CHECK(error.find("workloads[0].workloadIps[0]: \"10.0.0.300\" is not an IP address") !=
        std::string::npos);
  CHECK(w.Poll(&s, &error) == Outcome::kUnchanged);  // reported once, not every poll

  // A symlink swap (how Kubernetes updates a mounted ConfigMap) counts as a change.
  const auto real = t.dir / "v2.yaml";
  Write(real, "workloads: []\n");
  std::filesystem::remove(file);
  std::filesystem::create_symlink(real, file);
  REQUIRE(w.Poll(&s, &error) == Outcome::kReloaded);
  CHECK(s->workloads().empty());
  CHECK(w.reloads() == 2);
  CHECK(w.rejects() == 1);
}

}  // namespace
}  // namespace zt::config
