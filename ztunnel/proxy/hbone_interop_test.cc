// Interop: our HBONE server and client against an independent HTTP/2 + TLS stack
// (Python's ssl and the `h2` library, integration/tools/h2_peer.py), 100 MB each way.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "ztunnel/proxy/hbone_test_util.h"

extern char** environ;

namespace zt::proxy {
namespace {

namespace fs = std::filesystem;
using testing::Client;
using testing::Ctx;
using testing::EchoServer;
using testing::InboundServer;
using testing::kClientId;
using testing::kServerId;
using testing::ReadRandomSizes;
using testing::UniqueFd;
using testing::WriteRandomSizes;

constexpr size_t kBytes = 100 << 20;

// Peer runs h2_peer.py with its stdout on a pipe.
class Peer : public io::testing::Subprocess {
 public:
  explicit Peer(std::vector<std::string> args) : Subprocess(Argv(std::move(args))) {}

 private:
  static std::vector<std::string> Argv(std::vector<std::string> args) {
    std::vector<std::string> argv = {
        "/usr/bin/python3", std::string(ZTUNNEL_SOURCE_DIR) + "/integration/tools/h2_peer.py"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
};

// Files writes the PEM files the Python peer loads.
struct Files {
  fs::path dir;
  Files() {
    char tmpl[] = "/tmp/zt-interop-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~Files() { fs::remove_all(dir); }
  std::string Write(const std::string& name, const std::string& pem) {
    std::ofstream(dir / name) << pem;
    return (dir / name).string();
  }
};

std::string Field(const std::string& json, const std::string& key) {
  const auto k = json.find("\"" + key + "\": ");
  if (k == std::string::npos) return "";
  auto start = k + key.size() + 4;
  if (json[start] == '"') ++start;
  const auto end = json.find_first_of("\",}", start);
  return json.substr(start, end - start);
}

TEST_CASE("Interop: an independent HTTP/2 client tunnels 100 MB each way through us",
          "[proxy][hbone][interop]") {
  testing::Pki pki;
  EchoServer echo;
  InboundServer inbound(pki.server);
  Files files;
  auto client_creds = pki.ca.Issue(kClientId);
  Peer peer({"client", "--ca", files.Write("ca.pem", pki.ca.cert.ToPem()), "--cert",
             files.Write("client.pem", client_creds.chain[0].ToPem()), "--key",
             files.Write("client.key", client_creds.key.ToPem()), "--connect",
             inbound.addr().ToString(), "--authority", echo.addr().ToString(), "--bytes",
             std::to_string(kBytes)});
  const std::string result = peer.Line();
  INFO(result);
  CHECK(peer.Wait() == 0);
  CHECK(Field(result, "status") == "200");
  CHECK(Field(result, "sent") == std::to_string(kBytes));
  CHECK(Field(result, "received") == std::to_string(kBytes));
  CHECK(Field(result, "sent_sha256") == Field(result, "received_sha256"));
  CHECK(Field(result, "sent_sha256").size() == 64);
  const auto peers = inbound.peers();
  REQUIRE(peers.size() == 1);
  CHECK(peers[0] == kClientId);  // we verified the Python client's SPIFFE identity
}

TEST_CASE("Interop: we tunnel 100 MB each way through an independent HTTP/2 server",
          "[proxy][hbone][interop]") {
  testing::Pki pki;
  Files files;
  auto server_creds = pki.ca.Issue(kServerId);
  Peer peer({"server", "--ca", files.Write("ca.pem", pki.ca.cert.ToPem()), "--cert",
             files.Write("server.pem", server_creds.chain[0].ToPem()), "--key",
             files.Write("server.key", server_creds.key.ToPem())});
  const std::string listening = peer.Line();
  REQUIRE(listening.rfind("listening ", 0) == 0);
  auto addr = io::SocketAddress::Parse("127.0.0.1:" + listening.substr(10));
  REQUIRE(addr);
  Client client(*addr, pki.client, {kServerId});
  REQUIRE(client.ready());
  UniqueFd app = client.Open(*io::SocketAddress::Parse("10.0.0.9:80"));  // any target: it echoes
  std::thread writer([&] { WriteRandomSizes(app.get(), 77, kBytes); });
  CHECK(ReadRandomSizes(app.get(), 77) == kBytes);
  writer.join();
}

}  // namespace
}  // namespace zt::proxy
