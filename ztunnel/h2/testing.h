// Test helper: writes raw HTTP/2 frames, for playing a hostile peer. Tests only.
#pragma once

#include <nghttp2/nghttp2.h>

#include <catch2/catch.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace zt::h2::testing {

// Frames is a minimal HTTP/2 frame writer for hostile peers.
struct Frames {
  nghttp2_hd_deflater* deflater = nullptr;
  Frames() { nghttp2_hd_deflate_new(&deflater, 4096); }
  ~Frames() { nghttp2_hd_deflate_del(deflater); }

  static std::string Frame(uint8_t type, uint8_t flags, int32_t stream, std::string_view payload) {
    std::string f;
    f.push_back(static_cast<char>(payload.size() >> 16));
    f.push_back(static_cast<char>(payload.size() >> 8));
    f.push_back(static_cast<char>(payload.size()));
    f.push_back(static_cast<char>(type));
    f.push_back(static_cast<char>(flags));
    for (int shift : {24, 16, 8, 0}) f.push_back(static_cast<char>((stream >> shift) & 0xff));
    f.append(payload);
    return f;
  }
  static std::string Preface() {
    return std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + Frame(NGHTTP2_SETTINGS, 0, 0, "");
  }
  std::string Block(const std::vector<std::pair<std::string, std::string>>& headers) {
    std::vector<nghttp2_nv> nva;
    for (const auto& [n, v] : headers) {
      nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                     reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                     NGHTTP2_NV_FLAG_NONE});
    }
    std::string out(nghttp2_hd_deflate_bound(deflater, nva.data(), nva.size()), '\0');
    const ssize_t n = nghttp2_hd_deflate_hd(deflater, reinterpret_cast<uint8_t*>(out.data()),
                                            out.size(), nva.data(), nva.size());
    REQUIRE(n >= 0);
    out.resize(static_cast<size_t>(n));
    return out;
  }
  std::string Connect(int32_t stream, const std::string& authority = "10.0.0.2:80") {
    return Frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, stream,
                 Block({{":method", "CONNECT"}, {":authority", authority}}));
  }
  static std::string Rst(int32_t stream, uint32_t code) {
    std::string p;
    for (int shift : {24, 16, 8, 0}) p.push_back(static_cast<char>((code >> shift) & 0xff));
    return Frame(NGHTTP2_RST_STREAM, 0, stream, p);
  }
};

}  // namespace zt::h2::testing
