// ztunnel-agent: the node's enrollment agent (the istio-cni role).
//
//   ztunnel-agent serve [--zds-socket PATH] [--control-socket PATH] [--dns-capture]
//                       [--wait-for-sync]
//   ztunnel-agent enroll --netns PATH --uid UID --name NAME --namespace NS
//                        --service-account SA [--control-socket PATH]
//   ztunnel-agent keep --uid UID        (enrolled, netns not known yet)
//   ztunnel-agent unenroll --uid UID [--control-socket PATH]
//   ztunnel-agent synced                (ends --wait-for-sync)
//   ztunnel-agent cleanup               (an uninstall: every capture removed now)
//   ztunnel-agent list [--control-socket PATH]
//
// Environment: INPOD_UDS (the ZDS socket, as Istio's ztunnel names it),
// ZTUNNEL_AGENT_SOCKET (the control socket).
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>

#include "ztunnel/agent/agent.h"
#include "ztunnel/core/duration.h"
#include "ztunnel/inpod/wire.h"

namespace {

constexpr const char* kUsage =
    "usage: ztunnel-agent serve [--zds-socket PATH] [--control-socket PATH] [--dns-capture]\n"
    "                           [--wait-for-sync] [--unenroll-grace DURATION]\n"
    "                           [--sysctl-dir DIR]\n"
    "       ztunnel-agent enroll --netns PATH --uid UID --name NAME --namespace NS "
    "--service-account SA\n"
    "       ztunnel-agent keep --uid UID\n"
    "       ztunnel-agent unenroll --uid UID\n"
    "       ztunnel-agent synced\n"
    "       ztunnel-agent cleanup\n"
    "       ztunnel-agent list\n"
    "\n"
    "serve --wait-for-sync holds every node process's snapshot until `synced` (a\n"
    "restarted agent rebuilds its pod list first). After unenroll, a pod's redirects go at\n"
    "once and its connection routing after --unenroll-grace (default 30s; at least the\n"
    "node process's --drain-timeout), so live connections drain; cleanup (an uninstall)\n"
    "removes every pod's capture at once. Enrolled pods get net.ipv4.tcp_migrate_req=1\n"
    "(written under --sysctl-dir, default /proc/sys, from inside the pod's netns) so an\n"
    "upgrade's old node process hands queued connections to the new one.\n"
    "Every command but serve\n"
    "talks to a running agent over --control-socket.\n"
    "Environment: INPOD_UDS (--zds-socket), ZTUNNEL_AGENT_SOCKET (--control-socket),\n"
    "ZTUNNEL_UNENROLL_GRACE (--unenroll-grace), ZTUNNEL_SYSCTL_DIR (--sysctl-dir).\n";

int Usage(const std::string& problem) {
  std::fprintf(stderr, "ztunnel-agent: %s\n%s", problem.c_str(), kUsage);
  return 2;
}

// Request sends one control request to a running agent and prints its reply.
int Request(const std::string& socket_path, const std::string& text) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) return Usage("control socket path too long");
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  zt::io::UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::fprintf(
        stderr,
        "ztunnel-agent: cannot reach the agent at %s: %s (is `ztunnel-agent serve` running?)\n",
        socket_path.c_str(), std::strerror(errno));
    return 1;
  }
  std::string error;
  zt::inpod::Datagram reply;
  if (!zt::inpod::SendDatagram(fd.get(), text, -1, &error) ||
      zt::inpod::ReceiveDatagram(fd.get(), &reply, &error) != zt::inpod::Receive::kOk) {
    std::fprintf(stderr, "ztunnel-agent: %s\n",
                 error.empty() ? "the agent hung up" : error.c_str());
    return 1;
  }
  const bool ok = reply.bytes.starts_with("ok\n");
  const std::string body = reply.bytes.substr(reply.bytes.find('\n') + 1);
  std::fprintf(ok ? stdout : stderr, "%s%s%s", ok ? "" : "ztunnel-agent: ", body.c_str(),
               body.empty() || body.back() == '\n' ? "" : "\n");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage("missing command");
  const std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  const std::set<std::string> valued = {
      "zds-socket", "control-socket",  "netns",          "uid",       "name",
      "namespace",  "service-account", "unenroll-grace", "sysctl-dir"};
  std::map<std::string, std::string> flags;
  bool dns_capture = false, wait_for_sync = false;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (!arg.starts_with("--")) return Usage("unexpected argument \"" + arg + "\"");
    arg = arg.substr(2);
    if (arg == "dns-capture" || arg == "wait-for-sync") {
      (arg == "dns-capture" ? dns_capture : wait_for_sync) = true;
      continue;
    }
    std::string value;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return Usage("--" + arg + " needs a value");
    }
    if (!valued.count(arg)) return Usage("unknown flag --" + arg);
    flags[arg] = value;
  }
  auto flag_or_env = [&](const char* name, const char* env, const char* fallback) {
    if (auto it = flags.find(name); it != flags.end()) return it->second;
    const char* e = std::getenv(env);
    return std::string(e != nullptr && *e != '\0' ? e : fallback);
  };
  const std::string control =
      flag_or_env("control-socket", "ZTUNNEL_AGENT_SOCKET", "/var/run/ztunnel/agent.sock");
  if (command == "serve") {
    zt::agent::Options options;
    options.zds_socket = flag_or_env("zds-socket", "INPOD_UDS", "/var/run/ztunnel/ztunnel.sock");
    options.control_socket = control;
    options.capture.dns_capture = dns_capture;
    options.wait_for_sync = wait_for_sync;
    const std::string grace = flag_or_env("unenroll-grace", "ZTUNNEL_UNENROLL_GRACE", "30s");
    const auto parsed = zt::ParseDuration(grace);
    if (!parsed || *parsed > std::chrono::hours(24)) {
      return Usage("--unenroll-grace \"" + grace + "\" is not a duration up to 24h (e.g. 30s)");
    }
    options.unenroll_grace = *parsed;
    options.sysctl_dir = flag_or_env("sysctl-dir", "ZTUNNEL_SYSCTL_DIR", "/proc/sys");
    zt::agent::Agent agent(options);
    std::string error;
    if (!agent.Start(&error)) {
      std::fprintf(stderr, "ztunnel-agent: %s\n", error.c_str());
      return 1;
    }
    return agent.Run();
  }
  if (command == "enroll") {
    std::string text = "enroll\n";
    for (auto [flag, key] : {std::pair{"netns", "netns"},
                             {"uid", "uid"},
                             {"name", "name"},
                             {"namespace", "namespace"},
                             {"service-account", "service_account"}}) {
      if (!flags.count(flag)) return Usage(std::string("enroll needs --") + flag);
      text += std::string(key) + "=" + flags[flag] + "\n";
    }
    return Request(control, text);
  }
  if (command == "unenroll") {
    if (!flags.count("uid")) return Usage("unenroll needs --uid");
    return Request(control, "unenroll\nuid=" + flags["uid"] + "\n");
  }
  if (command == "keep") {
    if (!flags.count("uid")) return Usage("keep needs --uid");
    return Request(control, "keep\nuid=" + flags["uid"] + "\n");
  }
  if (command == "synced") return Request(control, "synced\n");
  if (command == "cleanup") return Request(control, "cleanup\n");
  if (command == "list") return Request(control, "list\n");
  return Usage("unknown command \"" + command + "\"");
}
