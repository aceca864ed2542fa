// GoPeer: integration/tools/grpcpeer (a grpc-go server) for interop tests. Tests only.
#pragma once

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ztunnel/control/grpc_channel.h"
#include "ztunnel/io/testing.h"

namespace zt::control::testing {

namespace fs = std::filesystem;

/// GoPeer runs grpcpeer in a temporary directory and knows its port and CA.
class GoPeer {
 public:
  /// `script`, when given, holds DeltaDiscoveryResponse files to serve (--ads-script).
  explicit GoPeer(const std::string& script = "") {
    char tmpl[] = "/tmp/zt-grpcpeer-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    std::vector<std::string> argv{ZTUNNEL_GRPCPEER, "--dir", dir_.string()};
    if (!script.empty()) {
      argv.push_back("--ads-script");
      argv.push_back(script);
    }
    proc_ = std::make_unique<io::testing::Subprocess>(std::move(argv));
    const std::string line = proc_->Line();
    REQUIRE(line.rfind("listening ", 0) == 0);
    port_ = line.substr(10);
    std::ifstream in(dir_ / "ca.pem");
    std::stringstream pem;
    pem << in.rdbuf();
    auto roots = tls::Certificate::ChainFromPem(pem.str());
    REQUIRE(roots.ok());
    roots_ = std::move(roots).value();
  }
  ~GoPeer() {
    proc_.reset();
    fs::remove_all(dir_);
  }
  void Kill() { proc_.reset(); }
  /// Line reads the peer's next stdout line ("request BASE64" in ADS mode).
  std::string Line() { return proc_->Line(); }
  GrpcChannelOptions Options(const std::string& server_name = "grpcpeer.test") const {
    GrpcChannelOptions o;
    o.address = "127.0.0.1:";
    o.address += port_;
    o.server_name = server_name;
    o.roots = roots_;
    return o;
  }

 private:
  fs::path dir_;
  std::unique_ptr<io::testing::Subprocess> proc_;
  std::string port_;
  std::vector<tls::Certificate> roots_;
};

/// Quiesce runs `lt`'s loop until every channel's connection fibers have ended (a
/// destroyed channel's fibers end at their cancelled operation's CQE).
inline void Quiesce(io::testing::LoopThread& lt) {
  for (int i = 0; i < 500 && GrpcChannel::LiveConnections() > 0; ++i) {
    lt.Run([] {});
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(GrpcChannel::LiveConnections() == 0);
}

}  // namespace zt::control::testing
