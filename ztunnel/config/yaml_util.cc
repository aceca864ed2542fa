#include "ztunnel/config/yaml_util.h"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>

#include <charconv>
#include <set>
#include <sstream>
#include <vector>

namespace zt::config::yaml {

void Fail(const std::string& path, const std::string& what) {
  throw ConfigError{fmt::format("{}: {}", path, what)};
}

std::string Describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "empty";
    default:
      return fmt::format("\"{}\"", n.Scalar());
  }
}

std::string String(const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) Fail(path, fmt::format("expected a string, got {}", Describe(n)));
  return n.Scalar();
}

bool Bool(const YAML::Node& n, const std::string& path) {
  if (n.IsScalar() && (n.Scalar() == "true" || n.Scalar() == "false")) {
    return n.Scalar() == "true";
  }
  Fail(path, fmt::format("expected true or false, got {}", Describe(n)));
}

uint16_t Port(const YAML::Node& n, const std::string& path) {
  unsigned v = 0;
  if (n.IsScalar()) {
    const std::string& s = n.Scalar();
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (!s.empty() && ec == std::errc() && end == s.data() + s.size() && v <= 65535) {
      return static_cast<uint16_t>(v);
    }
  }
  Fail(path, fmt::format("{} is not a port (0-65535)", Describe(n)));
}

void CheckKeys(const YAML::Node& n, const std::string& path, const std::set<std::string>& known) {
  if (!n.IsMap()) Fail(path, fmt::format("expected a map, got {}", Describe(n)));
  for (const auto& kv : n) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    if (known.count(key) == 0) Fail(path, fmt::format("unknown key \"{}\"", key));
  }
}

bool IsSet(const YAML::Node& n) {
  return n && !n.IsNull() && !((n.IsSequence() || n.IsMap()) && n.size() == 0);
}

namespace {

std::string At(const YAML::Mark& m) {
  return m.is_null() ? std::string("?")
                     : fmt::format("line {}, column {}", m.line + 1, m.column + 1);
}

// Keys whose list items are string matches, the one place tags mean something.
bool HoldsStringMatches(const std::string& key) {
  return key == "namespaces" || key == "notNamespaces" || key == "principals" ||
         key == "notPrincipals";
}

bool IsMatchTag(const std::string& tag) {
  return tag == "!Exact" || tag == "!Prefix" || tag == "!Suffix" || tag == "!Presence";
}

// Bounds of Strict's walk. A local config is at most ~10 levels deep (policies[] →
// rules → clauses → matches → principals[] → {Exact: ...}); aliases are expanded by
// the walk, so the node budget also bounds what an alias bomb (each level a list of
// aliases to the one before) makes the parser do, and a self-referencing alias
// (`&a [*a]`) ends at the depth bound instead of overflowing the stack.
constexpr int kMaxDepth = 64;
constexpr size_t kMaxNodes = 1'000'000;

// Strict walks the tree: duplicate keys and tags out of place fail, naming the line.
void Strict(const YAML::Node& n, bool match_item, int depth, size_t& nodes) {
  if (depth > kMaxDepth) {
    throw ConfigError{
        fmt::format("{}: nested deeper than {} levels (or an alias that contains itself)",
                    At(n.Mark()), kMaxDepth)};
  }
  if (++nodes > kMaxNodes) {
    throw ConfigError{fmt::format(
        "{}: more than {} YAML nodes once aliases are expanded; the config is too large",
        At(n.Mark()), kMaxNodes)};
  }
  const std::string& tag = n.Tag();
  // yaml-cpp's "?" is a plain node with no tag, "!" a quoted scalar's.
  if (!tag.empty() && tag != "?" && tag != "!" && !(match_item && IsMatchTag(tag))) {
    throw ConfigError{fmt::format(
        "{}: tag \"{}\" is not allowed here (tags are read only as !Exact, !Prefix, !Suffix "
        "or !Presence on policy string matches)",
        At(n.Mark()), tag)};
  }
  if (n.IsMap()) {
    std::set<std::string> seen;
    for (const auto& kv : n) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
      if (!kv.first.IsScalar()) {
        throw ConfigError{fmt::format("{}: a map key must be a plain string", At(kv.first.Mark()))};
      }
      if (!seen.insert(key).second) {
        throw ConfigError{
            fmt::format("{}: duplicate key \"{}\" (YAML would silently keep only the first)",
                        At(kv.first.Mark()), key)};
      }
      Strict(kv.first, false, depth + 1, nodes);
      if (kv.second.IsSequence() && HoldsStringMatches(key)) {
        for (const auto& item : kv.second) Strict(item, true, depth + 2, nodes);
      } else {
        Strict(kv.second, false, depth + 1, nodes);
      }
    }
  } else if (n.IsSequence()) {
    for (const auto& item : n) Strict(item, false, depth + 1, nodes);
  }
}

// DocumentStarts records where each document begins and ignores everything else.
class DocumentStarts final : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

constexpr size_t kMaxDocuments = 1000;

// CheckDocuments runs the parser over `text` once, only to see that it gets to the
// end. yaml-cpp 0.7's LoadAll never returns on some malformed input (21 bytes found
// by fuzz/local_config_fuzz.cc, `&ser,viceAccounts:` and two stray bytes): its parser
// keeps reporting one more empty document at the same place, and LoadAll allocates a
// node for each until memory runs out. A document that starts where the previous one
// did is that loop.
void CheckDocuments(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentStarts events;
  while (parser.HandleNextDocument(events)) {
    const auto& s = events.starts;
    if (s.size() >= 2 && s[s.size() - 1].pos == s[s.size() - 2].pos) {
      throw ConfigError{
          fmt::format("{}: the YAML parser cannot get past this point", At(s.back()))};
    }
    if (s.size() > kMaxDocuments) {
      throw ConfigError{
          fmt::format("{}: more than {} YAML documents", At(s.back()), kMaxDocuments)};
    }
  }
}

}  // namespace

YAML::Node LoadOne(const std::string& text) {
  CheckDocuments(text);  // then LoadAll, which makes the same parser calls, ends too
  const std::vector<YAML::Node> docs = YAML::LoadAll(text);
  YAML::Node root(YAML::NodeType::Null);
  bool found = false;
  for (const YAML::Node& d : docs) {
    if (d.IsNull()) continue;  // an empty document (a leading or trailing ---)
    if (found) {
      throw ConfigError{fmt::format(
          "{}: a second YAML document (after ---) is not supported: everything must be in one "
          "document, or part of the config would be ignored",
          At(d.Mark()))};
    }
    root = d;
    found = true;
  }
  size_t nodes = 0;
  if (found) Strict(root, false, 0, nodes);
  return root;
}

void ForEach(const YAML::Node& n, const std::string& path,
             const std::function<void(const YAML::Node&, const std::string&)>& fn) {
  if (!n || n.IsNull()) return;
  if (!n.IsSequence()) Fail(path, fmt::format("expected a list, got {}", Describe(n)));
  for (size_t i = 0; i < n.size(); ++i) fn(n[i], fmt::format("{}[{}]", path, i));
}

}  // namespace zt::config::yaml
