// FrameWriter writes raw HTTP/2 frames with its own HPACK table: how tests play a
// hostile peer (h2/testing.h adds Catch checks on top) and how fuzz/make_seeds.cc and
// the fuzz targets build byte streams. Not linked into the binaries; no checks here.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace zt::h2::testing {

/// Headers is a header list in the order it goes on the wire.
using Headers = std::vector<std::pair<std::string, std::string>>;

/// FrameWriter owns one HPACK encoder; use it from one thread.
class FrameWriter {
 public:
  /// kPreface is the client connection preface (RFC 9113 §3.4), without SETTINGS.
  static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

  FrameWriter() { nghttp2_hd_deflate_new(&deflater_, 4096); }
  ~FrameWriter() { nghttp2_hd_deflate_del(deflater_); }
  FrameWriter(const FrameWriter&) = delete;
  FrameWriter& operator=(const FrameWriter&) = delete;

  /// Frame is one frame: 9-byte header, then `payload` as given.
  static std::string Frame(uint8_t type, uint8_t flags, int32_t stream, std::string_view payload) {
    std::string f;
    f.push_back(static_cast<char>(payload.size() >> 16));
    f.push_back(static_cast<char>(payload.size() >> 8));
    f.push_back(static_cast<char>(payload.size()));
    f.push_back(static_cast<char>(type));
    f.push_back(static_cast<char>(flags));
    f.append(U32(static_cast<uint32_t>(stream)));
    f.append(payload);
    return f;
  }
  /// U32 is `v` in network byte order (error codes, window increments).
  static std::string U32(uint32_t v) {
    std::string p;
    for (int shift : {24, 16, 8, 0}) p.push_back(static_cast<char>((v >> shift) & 0xff));
    return p;
  }
  /// Preface is the connection preface followed by an empty SETTINGS frame.
  static std::string Preface() { return std::string(kPreface) + Frame(NGHTTP2_SETTINGS, 0, 0, ""); }
  /// Block HPACK-encodes `headers` with this writer's table; nullopt if nghttp2 refuses.
  std::optional<std::string> Block(const Headers& headers) {
    std::vector<nghttp2_nv> nva;
    for (const auto& [n, v] : headers) {
      nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                     reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                     NGHTTP2_NV_FLAG_NONE});
    }
    std::string out(nghttp2_hd_deflate_bound(deflater_, nva.data(), nva.size()), '\0');
    const ssize_t n = nghttp2_hd_deflate_hd(deflater_, reinterpret_cast<uint8_t*>(out.data()),
                                            out.size(), nva.data(), nva.size());
    if (n < 0) return std::nullopt;
    out.resize(static_cast<size_t>(n));
    return out;
  }
  /// Headers is one HEADERS frame (END_HEADERS plus `flags`) carrying `headers`.
  std::string HeadersFrame(int32_t stream, const Headers& headers, uint8_t flags = 0) {
    return Frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | flags, stream,
                 Block(headers).value_or(""));
  }
  /// Connect is a CONNECT request's HEADERS frame.
  std::string Connect(int32_t stream, const std::string& authority = "10.0.0.2:80") {
    return HeadersFrame(stream, {{":method", "CONNECT"}, {":authority", authority}});
  }
  /// Response is a response's HEADERS frame with `status`.
  std::string Response(int32_t stream, const std::string& status, uint8_t flags = 0) {
    return HeadersFrame(stream, {{":status", status}}, flags);
  }
  /// Rst is RST_STREAM with `code`.
  static std::string Rst(int32_t stream, uint32_t code) {
    return Frame(NGHTTP2_RST_STREAM, 0, stream, U32(code));
  }

 private:
  nghttp2_hd_deflater* deflater_ = nullptr;
};

}  // namespace zt::h2::testing
