// Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN): every case makes its own network
// namespace, which disappears with its last descriptor, also when a case fails. CI
// runs as root; run elsewhere these fail rather than skip.
#include "ztunnel/iptables/capture.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <thread>

#include "ztunnel/io/fd.h"
#include "ztunnel/iptables/run.h"

namespace zt::iptables {
namespace {

// FreshNetns makes a new network namespace (from a helper thread, so this thread
// stays home) with lo up, as in a pod.
io::UniqueFd FreshNetns() {
  REQUIRE(geteuid() == 0);  // needs root: fail, never skip
  io::UniqueFd ns;
  std::thread maker([&] {
    if (unshare(CLONE_NEWNET) == 0)
      ns.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  });
  maker.join();
  REQUIRE(ns.valid());
  REQUIRE(RunInNetns(ns.get(), {"ip", "link", "set", "lo", "up"}).ok());
  return ns;
}

TEST_CASE("Install is idempotent and Uninstall restores the namespace", "[iptables][root]") {
  io::UniqueFd ns = FreshNetns();
  const std::string before = Snapshot(ns.get());
  std::string error;
  const bool installed = Install(ns.get(), {}, {}, &error);
  INFO(error);
  REQUIRE(installed);
  const std::string once = Snapshot(ns.get());
  INFO(once);
  CHECK(once != before);
  for (const char* expect :
       {"-A OUTPUT -j ISTIO_OUTPUT", "-A PREROUTING -j ISTIO_PRERT", "--to-ports 15001",
        "--to-ports 15006", "! -d ::1/128 -p tcp -j REDIRECT --to-ports 15001",
        "fwmark 0x111/0xfff lookup 100", "local default dev lo"}) {
    CHECK(once.find(expect) != std::string::npos);
  }
  REQUIRE(Install(ns.get(), {}, {}, &error));
  CHECK(Snapshot(ns.get()) == once);  // twice = once
  // A different config replaces the rules, it does not add to them.
  REQUIRE(Install(ns.get(), {.dns_capture = true}, {}, &error));
  const std::string dns = Snapshot(ns.get());
  CHECK(dns.find("--to-ports 15053") != std::string::npos);
  REQUIRE(Install(ns.get(), {}, {}, &error));
  CHECK(Snapshot(ns.get()) == once);

  REQUIRE(Uninstall(ns.get(), {}, &error));
  CHECK(Snapshot(ns.get()) == before);
  REQUIRE(Uninstall(ns.get(), {}, &error));  // nothing left to remove is fine
  CHECK(Snapshot(ns.get()) == before);
}

TEST_CASE("StopCapturing drops the redirects and keeps the connection routing",
          "[iptables][root]") {
  io::UniqueFd ns = FreshNetns();
  const std::string before = Snapshot(ns.get());
  std::string error;
  REQUIRE(Install(ns.get(), {}, {}, &error));
  const std::string installed = Snapshot(ns.get());
  REQUIRE(StopCapturing(ns.get(), {}, &error));
  const std::string stopped = Snapshot(ns.get());
  INFO(stopped);
  // New connections go direct: no REDIRECT, no nat chain or jump of ours.
  CHECK(stopped.find("REDIRECT") == std::string::npos);
  CHECK(stopped.find("*nat") == std::string::npos);
  // Connections the node process carries keep their mark and its route to loopback.
  for (const char* expect :
       {"-A OUTPUT -j ISTIO_OUTPUT", "CONNMARK --restore-mark", "CONNMARK --set-xmark 0x111/0xfff",
        "fwmark 0x111/0xfff lookup 100", "local default dev lo"}) {
    CHECK(stopped.find(expect) != std::string::npos);
  }
  REQUIRE(StopCapturing(ns.get(), {}, &error));  // twice = once
  CHECK(Snapshot(ns.get()) == stopped);
  // Enrolled again within the grace: the same rules as a fresh install.
  REQUIRE(Install(ns.get(), {}, {}, &error));
  CHECK(Snapshot(ns.get()) == installed);
  REQUIRE(StopCapturing(ns.get(), {}, &error));
  REQUIRE(Uninstall(ns.get(), {}, &error));  // the grace is over
  CHECK(Snapshot(ns.get()) == before);
}

TEST_CASE("A failed install names the tool and leaves the namespace as it was",
          "[iptables][root]") {
  io::UniqueFd ns = FreshNetns();
  const std::string before = Snapshot(ns.get());
  std::string error;
  SECTION("ip6tables-restore missing: the IPv4 half and the routing are taken back") {
    Tools tools;
    tools.ip6tables_restore = "/nonexistent/ip6tables-restore";
    CHECK_FALSE(Install(ns.get(), {}, tools, &error));
    CHECK(error.find("/nonexistent/ip6tables-restore") != std::string::npos);
    CHECK(error.find("No such file or directory") != std::string::npos);
    CHECK(Snapshot(ns.get()) == before);
  }
  SECTION("iptables-restore fails: its exit code is reported") {
    Tools tools;
    tools.iptables_restore = "false";
    CHECK_FALSE(Install(ns.get(), {}, tools, &error));
    CHECK(error.find("false: exit code 1") != std::string::npos);
    CHECK(Snapshot(ns.get()) == before);
  }
  SECTION("a failed reinstall keeps the rules already in force") {
    REQUIRE(Install(ns.get(), {}, {}, &error));
    const std::string installed = Snapshot(ns.get());
    Tools tools;
    tools.ip6tables_restore = "false";
    CHECK_FALSE(Install(ns.get(), {.dns_capture = true}, tools, &error));
    CHECK(error.find("false: exit code 1") != std::string::npos);
    CHECK(Snapshot(ns.get()) == installed);  // neither family changed
    REQUIRE(Uninstall(ns.get(), {}, &error));
    CHECK(Snapshot(ns.get()) == before);
  }
}

TEST_CASE("RunInNetns reports a missing binary and feeds stdin", "[iptables][root]") {
  const CommandResult missing = RunInNetns(-1, {"no-such-tool-zt"});
  CHECK_FALSE(missing.started);
  CHECK(missing.Describe() == "no-such-tool-zt: not found in PATH");
  const CommandResult cat = RunInNetns(-1, {"cat"}, std::string(1 << 20, 'x'));
  REQUIRE(cat.ok());
  CHECK(cat.out.size() == (1u << 20));
  const CommandResult fails = RunInNetns(-1, {"sh", "-c", "echo oops >&2; exit 3"});
  CHECK(fails.started);
  CHECK(fails.Describe() == "exit code 3: oops");
}

TEST_CASE("WriteInNetns sets the namespace's own sysctl, not the caller's", "[iptables][root]") {
  const std::string path = "/proc/sys/net/ipv4/tcp_migrate_req";
  io::UniqueFd ns = FreshNetns();
  const std::string before = RunInNetns(-1, {"cat", path}).out;
  std::string error;
  REQUIRE(WriteInNetns(ns.get(), path, before == "1\n" ? "0" : "1", &error));
  CHECK(RunInNetns(ns.get(), {"cat", path}).out == (before == "1\n" ? "0\n" : "1\n"));
  CHECK(RunInNetns(-1, {"cat", path}).out == before);
  CHECK_FALSE(WriteInNetns(ns.get(), "/proc/sys/net/ipv4/no_such_sysctl", "1", &error));
  CHECK(error == "writing /proc/sys/net/ipv4/no_such_sysctl: No such file or directory");
}

}  // namespace
}  // namespace zt::iptables
