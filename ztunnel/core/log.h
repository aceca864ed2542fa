// Logging on fmt with a process-wide level that can change at run time.
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace zt::log {

/// Level orders log severities; kOff disables logging.
enum class Level : int { kTrace, kDebug, kInfo, kWarn, kError, kOff };

/// Format is the shape of log lines: text (tab-separated, ztunnel's default) or one
/// JSON object per line (`--log-format json`).
enum class Format : int { kText, kJson };

/// Field is one key=value of a structured line; numbers are unquoted in JSON.
struct Field {
  std::string_view key;
  std::string value;
  bool number = false;
};

namespace internal {
extern std::atomic<int> g_level;
void Write(Level level, std::string_view target, std::string_view message,
           std::span<const Field> fields = {});
}  // namespace internal

/// SetFormat chooses text or JSON lines for every thread (set it at start-up).
void SetFormat(Format format);
Format GetFormat();
/// ParseFormat reads "text|json".
std::optional<Format> ParseFormat(std::string_view text);
/// JsonEscape returns `text` as a JSON string literal, quotes included. Bytes that are
/// not well-formed UTF-8 become U+FFFD, so the result is always valid JSON.
std::string JsonEscape(std::string_view text);

/// SetLevel changes the level for every thread at once.
void SetLevel(Level level);
/// GetLevel returns the current level.
Level GetLevel();
/// ParseLevel reads "trace|debug|info|warn|error|off" (case-insensitive).
std::optional<Level> ParseLevel(std::string_view text);
/// LevelName is the lower-case name of a level.
std::string_view LevelName(Level level);

/// Enabled is the cheap check done before formatting anything.
inline bool Enabled(Level level) {
  return static_cast<int>(level) >= internal::g_level.load(std::memory_order_relaxed);
}

/// Log formats and writes one line (one write(2), so lines from threads never interleave).
template <typename... Args>
void Log(Level level, std::string_view target, fmt::format_string<Args...> format, Args&&... args) {
  if (!Enabled(level)) return;
  internal::Write(level, target, fmt::format(format, std::forward<Args>(args)...));
}

/// LogFields writes a message with structured fields: `message k=v k="v w"` as text,
/// or JSON keys next to "message".
inline void LogFields(Level level, std::string_view target, std::string_view message,
                      std::span<const Field> fields) {
  if (!Enabled(level)) return;
  internal::Write(level, target, message, fields);
}
inline void LogFields(Level level, std::string_view target, std::string_view message,
                      std::initializer_list<Field> fields) {
  LogFields(level, target, message, std::span<const Field>(fields.begin(), fields.size()));
}

}  // namespace zt::log

// Callers name a target (the module), as ztunnel's logs do: "proxy", "io", "access".
#define ZT_TRACE(target, ...) ::zt::log::Log(::zt::log::Level::kTrace, target, __VA_ARGS__)
#define ZT_DEBUG(target, ...) ::zt::log::Log(::zt::log::Level::kDebug, target, __VA_ARGS__)
#define ZT_INFO(target, ...) ::zt::log::Log(::zt::log::Level::kInfo, target, __VA_ARGS__)
#define ZT_WARN(target, ...) ::zt::log::Log(::zt::log::Level::kWarn, target, __VA_ARGS__)
#define ZT_ERROR(target, ...) ::zt::log::Log(::zt::log::Level::kError, target, __VA_ARGS__)
