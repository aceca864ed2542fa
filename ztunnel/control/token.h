// ReadToken: the node proxy's service-account token, read again for every xDS stream
// and CA request (the kubelet rotates the projected file).
#pragma once

#include <string>

namespace zt::control {

/// ReadToken returns the file's content without trailing whitespace; on failure "" and
/// `*why` names the file.
std::string ReadToken(const std::string& path, std::string* why);

}  // namespace zt::control
