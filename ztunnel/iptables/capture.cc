#include "ztunnel/iptables/capture.h"

#include <fmt/format.h>

#include <algorithm>
#include <regex>
#include <sstream>
#include <vector>

#include "ztunnel/iptables/run.h"

namespace zt::iptables {
namespace {

const Family kFamilies[] = {Family::kIpv4, Family::kIpv6};

const char* IpFlag(Family f) { return f == Family::kIpv4 ? "-4" : "-6"; }
const char* AnyLocal(Family f) { return f == Family::kIpv4 ? "0.0.0.0/0" : "::/0"; }
const std::string& RestoreTool(const Tools& t, Family f) {
  return f == Family::kIpv4 ? t.iptables_restore : t.ip6tables_restore;
}
const std::string& SaveTool(const Tools& t, Family f) {
  return f == Family::kIpv4 ? t.iptables_save : t.ip6tables_save;
}
std::string FwmarkRule() {
  return fmt::format("fwmark 0x{:x}/0x{:x} lookup {}", kConnMark, kMarkMask, kRouteTable);
}

// Ours is what iptables-save shows of our chains and jumps.
struct Ours {
  std::vector<Jump> jumps;
  std::vector<Chain> chains;
  bool empty() const { return jumps.empty() && chains.empty(); }
};

Ours Parse(const std::string& save) {
  Ours o;
  std::string table;
  std::istringstream lines(save);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("*")) {
      table = line.substr(1);
    } else if (line.starts_with(":")) {
      const std::string name = line.substr(1, line.find(' ') - 1);
      for (const Chain& c : Chains()) {
        if (table == c.table && name == c.name) o.chains.push_back(c);
      }
    } else if (line.starts_with("-A ")) {
      for (const Jump& j : Jumps()) {
        if (table == j.table && line == JumpRule(j)) o.jumps.push_back(j);
      }
    }
  }
  return o;
}

// ReadOurs lists what of ours is installed for `family`; false with *error when the
// save tool cannot run.
bool ReadOurs(int fd, const Tools& tools, Family family, Ours* ours, std::string* error) {
  const CommandResult r = RunInNetns(fd, {SaveTool(tools, family)});
  if (!r.ok()) {
    *error = fmt::format("{}: {}", SaveTool(tools, family), r.Describe());
    return false;
  }
  *ours = Parse(r.out);
  return true;
}

// Routing is the policy-routing half of the capture for one family.
struct Routing {
  bool rule = false;   // "fwmark 0x111/0xfff lookup 100" is in `ip rule`
  bool route = false;  // table 100 has "local default dev lo"
};

bool ReadRouting(int fd, const Tools& tools, Family f, Routing* out, std::string* error) {
  const CommandResult rules = RunInNetns(fd, {tools.ip, IpFlag(f), "rule", "show"});
  const CommandResult routes =
      RunInNetns(fd, {tools.ip, IpFlag(f), "route", "show", "table", std::to_string(kRouteTable)});
  // A table nothing was ever added to does not exist yet: that is "no route".
  const bool no_table =
      routes.started && routes.err.find("FIB table does not exist") != std::string::npos;
  if (!rules.ok() || (!routes.ok() && !no_table)) {
    *error = fmt::format("{} {} rule/route show: {}", tools.ip, IpFlag(f),
                         (!rules.ok() ? rules : routes).Describe());
    return false;
  }
  out->rule = rules.out.find(FwmarkRule()) != std::string::npos;
  out->route = routes.out.find("local default dev lo") != std::string::npos;
  return true;
}

bool Ip(int fd, const Tools& tools, std::vector<std::string> args, std::string* error) {
  args.insert(args.begin(), tools.ip);
  const CommandResult r = RunInNetns(fd, args);
  if (r.ok()) return true;
  std::string cmd;
  for (const std::string& a : args) cmd += (cmd.empty() ? "" : " ") + a;
  *error = fmt::format("{}: {}", cmd, r.Describe());
  return false;
}

std::vector<std::string> RuleArgs(Family f, const char* verb) {
  return {IpFlag(f),
          "rule",
          verb,
          "fwmark",
          fmt::format("0x{:x}/0x{:x}", kConnMark, kMarkMask),
          "pref",
          std::to_string(kRulePriority),
          "lookup",
          std::to_string(kRouteTable)};
}
std::vector<std::string> RouteArgs(Family f, const char* verb) {
  return {IpFlag(f), "route",     verb,
          "local",   AnyLocal(f), "dev",
          "lo",      "table",     std::to_string(kRouteTable)};
}

// RemoveRules deletes whatever of our chains and jumps exist for `family`.
bool RemoveRules(int fd, const Tools& tools, Family family, std::string* error) {
  Ours ours;
  if (!ReadOurs(fd, tools, family, &ours, error)) return false;
  if (ours.empty()) return true;
  const CommandResult r = RunInNetns(fd, {RestoreTool(tools, family), "--noflush"},
                                     RemovalInput(ours.jumps, ours.chains));
  if (!r.ok()) {
    *error = fmt::format("{} (removing rules): {}", RestoreTool(tools, family), r.Describe());
    return false;
  }
  return true;
}

}  // namespace

bool Install(int fd, const CaptureConfig& config, const Tools& tools, std::string* error) {
  // What this call added, so a failure can take exactly that back.
  std::vector<std::pair<Family, bool>> added_rule, added_route;  // (family, added)
  std::vector<Family> installed_rules;                           // families new to the rules
  auto undo = [&] {
    std::string ignored;
    for (Family f : installed_rules) RemoveRules(fd, tools, f, &ignored);
    for (auto [f, added] : added_route) {
      if (added) Ip(fd, tools, RouteArgs(f, "del"), &ignored);
    }
    for (auto [f, added] : added_rule) {
      if (added) Ip(fd, tools, RuleArgs(f, "del"), &ignored);
    }
  };
  for (Family f : kFamilies) {
    Routing routing;
    if (!ReadRouting(fd, tools, f, &routing, error)) return undo(), false;
    if (!routing.route && !Ip(fd, tools, RouteArgs(f, "add"), error)) return undo(), false;
    added_route.emplace_back(f, !routing.route);
    if (!routing.rule && !Ip(fd, tools, RuleArgs(f, "add"), error)) return undo(), false;
    added_rule.emplace_back(f, !routing.rule);
  }
  // Check both families' input first (--test commits nothing), so a tool that is
  // missing or refuses the rules fails before either family changes.
  Ours ours[2];
  std::string input[2];
  for (int i = 0; i < 2; ++i) {
    const Family f = kFamilies[i];
    if (!ReadOurs(fd, tools, f, &ours[i], error)) return undo(), false;
    std::vector<Jump> missing;
    for (const Jump& j : Jumps()) {
      if (std::find(ours[i].jumps.begin(), ours[i].jumps.end(), j) == ours[i].jumps.end()) {
        missing.push_back(j);
      }
    }
    input[i] = InstallInput(f, config, missing);
    const CommandResult r =
        RunInNetns(fd, {RestoreTool(tools, f), "--test", "--noflush"}, input[i]);
    if (!r.ok()) {
      *error = fmt::format("{}: {}", RestoreTool(tools, f), r.Describe());
      return undo(), false;
    }
  }
  for (int i = 0; i < 2; ++i) {
    const Family f = kFamilies[i];
    const CommandResult r = RunInNetns(fd, {RestoreTool(tools, f), "--noflush"}, input[i]);
    if (!r.ok()) {
      *error = fmt::format("{}: {}", RestoreTool(tools, f), r.Describe());
      return undo(), false;
    }
    if (ours[i].empty()) installed_rules.push_back(f);
  }
  return true;
}

bool StopCapturing(int fd, const Tools& tools, std::string* error) {
  for (Family f : kFamilies) {
    Ours ours;
    if (!ReadOurs(fd, tools, f, &ours, error)) return false;
    Ours nat;
    for (const Jump& j : ours.jumps) {
      if (std::string_view(j.table) == "nat") nat.jumps.push_back(j);
    }
    for (const Chain& c : ours.chains) {
      if (std::string_view(c.table) == "nat") nat.chains.push_back(c);
    }
    if (nat.empty()) continue;
    const CommandResult r =
        RunInNetns(fd, {RestoreTool(tools, f), "--noflush"}, RemovalInput(nat.jumps, nat.chains));
    if (!r.ok()) {
      *error = fmt::format("{} (removing the redirects): {}", RestoreTool(tools, f), r.Describe());
      return false;
    }
  }
  return true;
}

bool Uninstall(int fd, const Tools& tools, std::string* error) {
  std::vector<std::string> failures;
  for (Family f : kFamilies) {
    std::string e;
    if (!RemoveRules(fd, tools, f, &e)) failures.push_back(e);
    Routing routing;
    if (!ReadRouting(fd, tools, f, &routing, &e)) {
      failures.push_back(e);
      continue;
    }
    // A rule added twice by hand would show twice; a few rounds take them all.
    for (int i = 0; i < 8 && routing.rule; ++i) {
      if (!Ip(fd, tools, RuleArgs(f, "del"), &e)) {
        failures.push_back(e);
        break;
      }
      if (!ReadRouting(fd, tools, f, &routing, &e)) break;
    }
    if (routing.route && !Ip(fd, tools, RouteArgs(f, "del"), &e)) failures.push_back(e);
  }
  if (failures.empty()) return true;
  *error = failures[0];
  for (size_t i = 1; i < failures.size(); ++i) *error += "; " + failures[i];
  return false;
}

std::string Snapshot(int fd, const Tools& tools) {
  static const std::regex counters(R"(\[\d+:\d+\])");
  std::string out;
  for (Family f : kFamilies) {
    const CommandResult r = RunInNetns(fd, {SaveTool(tools, f)});
    out += fmt::format("# {}\n", SaveTool(tools, f));
    if (!r.ok()) {
      out += "error: " + r.Describe() + "\n";
      continue;
    }
    // Keep tables with rules or chains of their own: an empty table left behind by
    // the nf_tables backend is no rule.
    std::istringstream lines(r.out);
    std::string table_text;
    bool table_used = false;
    for (std::string line; std::getline(lines, line);) {
      if (line.starts_with("#")) continue;
      line = std::regex_replace(line, counters, "[0:0]");
      if (line.starts_with("*")) {
        table_text = line + "\n";
        table_used = false;
        continue;
      }
      table_text += line + "\n";
      if (line.starts_with("-A ") ||
          (line.starts_with(":") && line.find(" ACCEPT ") == std::string::npos &&
           line.find(" DROP ") == std::string::npos)) {
        table_used = true;
      }
      if (line == "COMMIT") {
        if (table_used) out += table_text;
        table_text.clear();
      }
    }
    for (const char* what : {"rule", "route"}) {
      std::vector<std::string> args = {tools.ip, IpFlag(f), what, "show"};
      if (std::string_view(what) == "route") {
        args.insert(args.end(), {"table", std::to_string(kRouteTable)});
      }
      const CommandResult ip = RunInNetns(fd, args);
      out += fmt::format("# ip {} {}\n{}", IpFlag(f), what,
                         ip.ok() || ip.err.find("FIB table does not exist") != std::string::npos
                             ? ip.out
                             : ip.Describe() + "\n");
    }
  }
  return out;
}

}  // namespace zt::iptables
