#include "ztunnel/core/log.h"

#include <unistd.h>

#include <cctype>
#include <chrono>
#include <ctime>
#include <string>

namespace zt::log {
namespace internal {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};

void Write(Level level, std::string_view target, std::string_view message) {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const auto secs = time_point_cast<seconds>(now);
  const auto micros = duration_cast<microseconds>(now - secs).count();
  const std::time_t t = system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  // Same shape as ztunnel's default text logs: time, level, target, message.
  std::string line = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z\t{}\t{}\t{}\n",
                                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                                 tm.tm_min, tm.tm_sec, micros, LevelName(level), target, message);
  // One write per line; a short write to stderr is not worth retrying here.
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace internal

void SetLevel(Level level) {
  internal::g_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

Level GetLevel() { return static_cast<Level>(internal::g_level.load(std::memory_order_relaxed)); }

std::optional<Level> ParseLevel(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "trace") return Level::kTrace;
  if (lower == "debug") return Level::kDebug;
  if (lower == "info") return Level::kInfo;
  if (lower == "warn" || lower == "warning") return Level::kWarn;
  if (lower == "error") return Level::kError;
  if (lower == "off") return Level::kOff;
  return std::nullopt;
}

std::string_view LevelName(Level level) {
  switch (level) {
    case Level::kTrace:
      return "trace";
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
    case Level::kOff:
      return "off";
  }
  return "unknown";
}

}  // namespace zt::log
