#include "ztunnel/core/result.h"

#include <cstring>

namespace zt {

const char* ErrcName(Errc code) {
  switch (code) {
    case Errc::kSystem:
      return "system error";
    case Errc::kTimeout:
      return "timeout";
    case Errc::kCancelled:
      return "cancelled";
    case Errc::kClosed:
      return "closed";
    case Errc::kInvalidArgument:
      return "invalid argument";
    case Errc::kNotFound:
      return "not found";
    case Errc::kLoop:
      return "proxy loop";
    case Errc::kUnavailable:
      return "unavailable";
    case Errc::kResourceExhausted:
      return "resource exhausted";
    case Errc::kOverloaded:
      return "overloaded: too much pending work, refused at once";
  }
  return "unknown error";
}

std::string Error::Message() const {
  std::string out = ErrcName(code);
  if (sys != 0) {
    out += ": ";
    out += std::strerror(sys);
  }
  return out;
}

}  // namespace zt
