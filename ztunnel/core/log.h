// Logging on fmt with a process-wide level that can change at run time.
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <optional>
#include <string_view>

namespace zt::log {

/// Level orders log severities; kOff disables logging.
enum class Level : int { kTrace, kDebug, kInfo, kWarn, kError, kOff };

namespace internal {
extern std::atomic<int> g_level;
void Write(Level level, std::string_view target, std::string_view message);
}  // namespace internal

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

}  // namespace zt::log

// Callers name a target (the module), as ztunnel's logs do: "proxy", "io", "access".
#define ZT_TRACE(target, ...) ::zt::log::Log(::zt::log::Level::kTrace, target, __VA_ARGS__)
#define ZT_DEBUG(target, ...) ::zt::log::Log(::zt::log::Level::kDebug, target, __VA_ARGS__)
#define ZT_INFO(target, ...) ::zt::log::Log(::zt::log::Level::kInfo, target, __VA_ARGS__)
#define ZT_WARN(target, ...) ::zt::log::Log(::zt::log::Level::kWarn, target, __VA_ARGS__)
#define ZT_ERROR(target, ...) ::zt::log::Log(::zt::log::Level::kError, target, __VA_ARGS__)
