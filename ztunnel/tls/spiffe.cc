#include "ztunnel/tls/spiffe.h"

#include <vector>

namespace zt::tls {
namespace {

constexpr std::string_view kScheme = "spiffe://";
constexpr size_t kMaxLength = 2048;  // SPIFFE spec limit for a SPIFFE ID

bool TrustDomainChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

bool SegmentChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

Error Fail(std::string* reason, const char* why) {
  if (reason != nullptr) *reason = why;
  return Error{Errc::kInvalidArgument};
}

}  // namespace

SpiffeId SpiffeId::Make(std::string_view trust_domain, std::string_view ns,
                        std::string_view service_account) {
  return SpiffeId{trust_domain.empty() ? "cluster.local" : std::string(trust_domain),
                  std::string(ns),
                  service_account.empty() ? "default" : std::string(service_account)};
}

Result<SpiffeId> SpiffeId::Parse(std::string_view uri, std::string* reason) {
  if (uri.size() > kMaxLength) return Fail(reason, "longer than 2048 bytes");
  if (uri.find('\0') != std::string_view::npos) return Fail(reason, "contains a NUL byte");
  if (uri.substr(0, kScheme.size()) != kScheme) return Fail(reason, "scheme is not spiffe://");
  std::string_view rest = uri.substr(kScheme.size());
  const size_t slash = rest.find('/');
  const std::string_view td = rest.substr(0, slash);
  if (td.empty()) return Fail(reason, "empty trust domain");
  for (char c : td) {
    if (!TrustDomainChar(c))
      return Fail(reason, "trust domain has a character outside [a-z0-9._-]");
  }
  if (slash == std::string_view::npos) return Fail(reason, "no path: expected /ns/<ns>/sa/<sa>");
  std::vector<std::string_view> segments;
  std::string_view path = rest.substr(slash + 1);
  for (;;) {
    const size_t next = path.find('/');
    segments.push_back(path.substr(0, next));
    if (next == std::string_view::npos) break;
    path = path.substr(next + 1);
  }
  for (std::string_view seg : segments) {
    if (seg.empty()) return Fail(reason, "empty path segment");
    if (seg == "." || seg == "..") return Fail(reason, "dot segment in path");
    for (char c : seg) {
      if (!SegmentChar(c)) return Fail(reason, "path has a character outside [A-Za-z0-9._-]");
    }
  }
  if (segments.size() != 4 || segments[0] != "ns" || segments[2] != "sa") {
    return Fail(reason, "path is not /ns/<namespace>/sa/<service-account>");
  }
  return SpiffeId{std::string(td), std::string(segments[1]), std::string(segments[3])};
}

std::string SpiffeId::ToString() const { return std::string(kScheme) + Principal(); }

std::string SpiffeId::Principal() const {
  return trust_domain + "/ns/" + ns + "/sa/" + service_account;
}

}  // namespace zt::tls
