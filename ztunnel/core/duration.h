// Durations as people write them in flags and env vars: "10s", "500ms", "2m", "1h".
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace zt {

/// kMaxDuration is the longest duration any flag or variable takes (365 days): longer
/// ones are mistakes, and far longer ones would overflow the nanosecond timers.
inline constexpr std::chrono::milliseconds kMaxDuration = std::chrono::hours(24 * 365);

/// ParseDuration reads a non-negative integer with a unit (ms, s, m, h); a bare number
/// means seconds, as TERMINATION_GRACE_PERIOD_SECONDS does. nullopt when malformed or
/// longer than kMaxDuration.
std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text);

/// FormatDuration renders a duration the way ParseDuration reads it back.
std::string FormatDuration(std::chrono::milliseconds d);

}  // namespace zt
