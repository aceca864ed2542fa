// Running a tool (iptables-restore, ip) inside a network namespace, with input and
// captured output. Control path only: it forks and waits.
#pragma once

#include <string>
#include <vector>

namespace zt::iptables {

/// CommandResult is what a finished command left behind.
struct CommandResult {
  bool started = false;  // false: the binary was not found or could not run
  int exit_code = -1;    // valid when started; -1 if killed by a signal
  std::string out, err;
  bool ok() const { return started && exit_code == 0; }
  /// Describe is "exit code 2: <first stderr line>" or why it did not start.
  std::string Describe() const;
};

/// RunInNetns runs argv (argv[0] searched in PATH unless it contains '/') inside the
/// network namespace opened as `netns_fd` (-1: the caller's own), feeding `input` to
/// its stdin. Only the child enters the namespace; the caller's threads never move.
CommandResult RunInNetns(int netns_fd, const std::vector<std::string>& argv,
                         const std::string& input = "");

/// WriteInNetns writes `value` to the file at `path` as opened from inside the network
/// namespace `netns_fd`: a /proc/sys/net path then names that namespace's sysctl,
/// whatever procfs mount it is reached through. A forked child enters the namespace;
/// the caller's threads never move. False with *error (the path and errno text).
bool WriteInNetns(int netns_fd, const std::string& path, const std::string& value,
                  std::string* error);

}  // namespace zt::iptables
