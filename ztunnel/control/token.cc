#include "ztunnel/control/token.h"

#include <fstream>
#include <sstream>

namespace zt::control {

std::string ReadToken(const std::string& path, std::string* why) {
  std::ifstream in(path);
  if (!in) {
    *why = "cannot read the token " + path;
    return "";
  }
  std::stringstream s;
  s << in.rdbuf();
  std::string token = s.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
    token.pop_back();
  }
  return token;
}

}  // namespace zt::control
