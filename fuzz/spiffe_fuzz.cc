// Fuzz target: SPIFFE id parsing (tls::SpiffeId::Parse), which decides who a peer
// certificate's URI SAN says it is. Strictness is the point, so the input is checked
// against an independent reading of the grammar we accept:
//   spiffe://<td>/ns/<ns>/sa/<sa>, td in [a-z0-9._-]+, ns and sa in [A-Za-z0-9._-]+
//   and not "." or "..", at most 2048 bytes, no NUL anywhere.
// An accepted id must print back to exactly the input, and refusals must say why.
// The input is also tried as a policy principal (Principal() is what policies match).
#include <string>
#include <string_view>

#include "fuzz/fuzz_input.h"
#include "ztunnel/tls/spiffe.h"

namespace {

bool AllOf(std::string_view s, bool upper) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
                    c == '_' || (upper && c >= 'A' && c <= 'Z');
    if (!ok) return false;
  }
  return true;
}

// Reference reads the grammar with a different method: fixed markers, then fields.
bool Reference(std::string_view s, std::string* td, std::string* ns, std::string* sa) {
  if (s.size() > 2048) return false;
  constexpr std::string_view kScheme = "spiffe://";
  if (s.size() < kScheme.size() || s.compare(0, kScheme.size(), kScheme) != 0) return false;
  s.remove_prefix(kScheme.size());
  const size_t a = s.find("/ns/");
  if (a == std::string_view::npos) return false;
  *td = std::string(s.substr(0, a));
  const std::string_view rest = s.substr(a + 4);
  const size_t b = rest.find("/sa/");
  if (b == std::string_view::npos) return false;
  *ns = std::string(rest.substr(0, b));
  *sa = std::string(rest.substr(b + 4));
  auto segment = [](const std::string& x) { return AllOf(x, true) && x != "." && x != ".."; };
  return AllOf(*td, false) && segment(*ns) && segment(*sa);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string reason;
  auto id = zt::tls::SpiffeId::Parse(text, &reason);
  std::string td, ns, sa;
  const bool expected = Reference(text, &td, &ns, &sa);
  ZT_FUZZ_CHECK(id.ok() == expected);
  if (!id) {
    ZT_FUZZ_CHECK(!reason.empty());
    ZT_FUZZ_CHECK(id.error().code == zt::Errc::kInvalidArgument);
    return 0;
  }
  ZT_FUZZ_CHECK(id->trust_domain == td && id->ns == ns && id->service_account == sa);
  ZT_FUZZ_CHECK(id->ToString() == text);
  ZT_FUZZ_CHECK(id->Principal() == text.substr(9));
  ZT_FUZZ_CHECK(zt::tls::SpiffeId::Make(td, ns, sa) == *id);
  auto again = zt::tls::SpiffeId::Parse(id->ToString());
  ZT_FUZZ_CHECK(again && *again == *id);
  return 0;
}
