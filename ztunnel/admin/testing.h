// Test helpers: a plain blocking HTTP client for the admin servers. Tests only.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>

namespace zt::admin::testing {

/// Connect opens a blocking TCP connection to 127.0.0.1:port.
inline int Connect(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  return fd;
}

/// Exchange sends `request` (if any), half-closes (so a keep-alive server closes after
/// its answer) and reads until the server closes; closes fd.
inline std::string Exchange(int fd, const std::string& request) {
  if (!request.empty())
    REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(request.size()));
  ::shutdown(fd, SHUT_WR);
  std::string out;
  char buf[512];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;)
    out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

/// Get is Exchange on a new connection.
inline std::string Get(uint16_t port, const std::string& request) {
  return Exchange(Connect(port), request);
}

}  // namespace zt::admin::testing
