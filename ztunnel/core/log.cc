#include "ztunnel/core/log.h"

#include <unistd.h>

#include <cctype>
#include <chrono>
#include <ctime>
#include <string>

namespace zt::log {
namespace internal {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::atomic<int> g_format{static_cast<int>(Format::kText)};

namespace {

// A text value needs quotes when it is empty or has spaces, quotes or '='.
bool NeedsQuotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\t' || c == '\n') return true;
  }
  return false;
}

}  // namespace

void Write(Level level, std::string_view target, std::string_view message,
           std::span<const Field> fields) {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const auto secs = time_point_cast<seconds>(now);
  const auto micros = duration_cast<microseconds>(now - secs).count();
  const std::time_t t = system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  const std::string time =
      fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
  std::string line;
  if (static_cast<Format>(g_format.load(std::memory_order_relaxed)) == Format::kJson) {
    line = fmt::format(R"({{"time":"{}","level":"{}","scope":{},"message":{})", time,
                       LevelName(level), JsonEscape(target), JsonEscape(message));
    for (const Field& f : fields) {
      line += ',' + JsonEscape(f.key) + ':' + (f.number ? f.value : JsonEscape(f.value));
    }
    line += "}\n";
  } else {
    // Same shape as ztunnel's default text logs: time, level, target, message.
    line = fmt::format("{}\t{}\t{}\t{}", time, LevelName(level), target, message);
    for (const Field& f : fields) {
      line += ' ';
      line += f.key;
      line += '=';
      if (!f.number && NeedsQuotes(f.value)) {
        line += JsonEscape(f.value);  // quoted, inner quotes escaped
      } else {
        line += f.value;
      }
    }
    line += '\n';
  }
  // One write per line; a short write to stderr is not worth retrying here.
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace internal

void SetFormat(Format format) {
  internal::g_format.store(static_cast<int>(format), std::memory_order_relaxed);
}

Format GetFormat() {
  return static_cast<Format>(internal::g_format.load(std::memory_order_relaxed));
}

std::optional<Format> ParseFormat(std::string_view text) {
  if (text == "text" || text == "TEXT") return Format::kText;
  if (text == "json" || text == "JSON") return Format::kJson;
  return std::nullopt;
}

namespace {

// Utf8Length is the length of the well-formed UTF-8 sequence starting a multi-byte
// character at text[at] (RFC 3629: no overlong forms, surrogates or code points past
// U+10FFFF), or 0 when there is none.
size_t Utf8Length(std::string_view text, size_t at) {
  const auto b0 = static_cast<unsigned char>(text[at]);
  size_t n;
  unsigned lo = 0x80, hi = 0xbf;  // the range of the second byte
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    n = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    if (b0 == 0xe0) lo = 0xa0;
    if (b0 == 0xed) hi = 0x9f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    if (b0 == 0xf0) lo = 0x90;
    if (b0 == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (text.size() - at < n) return 0;
  for (size_t i = 1; i < n; ++i) {
    const auto b = static_cast<unsigned char>(text[at + i]);
    if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xbf)) return 0;
  }
  return n;
}

}  // namespace

std::string JsonEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<int>(c));
        } else if (static_cast<unsigned char>(c) < 0x80) {
          out += c;
        } else if (const size_t n = Utf8Length(text, i); n != 0) {
          out.append(text.substr(i, n));
          i += n - 1;
        } else {
          // JSON is UTF-8: a stray byte (config strings and peer data can hold any)
          // would make the whole line or document unparseable. Say it was there.
          out += "\\ufffd";
        }
    }
  }
  out += '"';
  return out;
}

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
