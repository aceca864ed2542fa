#include "ztunnel/config/yaml_util.h"

#include <fmt/format.h>

#include <charconv>

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

void ForEach(const YAML::Node& n, const std::string& path,
             const std::function<void(const YAML::Node&, const std::string&)>& fn) {
  if (!n || n.IsNull()) return;
  if (!n.IsSequence()) Fail(path, fmt::format("expected a list, got {}", Describe(n)));
  for (size_t i = 0; i < n.size(); ++i) fn(n[i], fmt::format("{}[{}]", path, i));
}

}  // namespace zt::config::yaml
