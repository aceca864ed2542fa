// Strict YAML reading for the local config: every helper names the field path of
// what was wrong. Parsing is start-up/reload work, so errors travel as the
// ConfigError exception, caught at the top (ParseLocalConfig), never on the data path.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <set>
#include <string>

namespace zt::config::yaml {

/// ConfigError is one message: "path: what is wrong".
struct ConfigError {
  std::string message;
};

/// Fail throws ConfigError for the field at `path`.
[[noreturn]] void Fail(const std::string& path, const std::string& what);
/// Describe names what a node is, for "expected X, got Y" messages.
std::string Describe(const YAML::Node& n);
/// String reads a scalar.
std::string String(const YAML::Node& n, const std::string& path);
/// Bool reads true/false.
bool Bool(const YAML::Node& n, const std::string& path);
/// Port reads an integer 0..65535.
uint16_t Port(const YAML::Node& n, const std::string& path);
/// CheckKeys rejects any key of map `n` not in `known` (and `n` not being a map).
void CheckKeys(const YAML::Node& n, const std::string& path, const std::set<std::string>& known);
/// IsSet is true when the key holds something: not absent, null, [] or {}.
bool IsSet(const YAML::Node& n);
/// LoadOne parses `text` as exactly one YAML document and checks what yaml-cpp lets
/// through silently, so nothing in the file is dropped or read other than as written:
/// a second document (after `---`), a key repeated in one map (yaml-cpp keeps the
/// first), and a tag (`!!int`, `!foo`) anywhere but on the string matches of a
/// policy (`!Exact` ...). Each is a ConfigError naming the line, and so is a tree
/// nested deeper than 64 levels or larger than 1,000,000 nodes once aliases are
/// expanded (a self-referencing alias, an alias bomb).
YAML::Node LoadOne(const std::string& text);

/// ForEach calls `fn(item, item_path)` for each element of the list `n` (null = empty).
void ForEach(const YAML::Node& n, const std::string& path,
             const std::function<void(const YAML::Node&, const std::string&)>& fn);

}  // namespace zt::config::yaml
