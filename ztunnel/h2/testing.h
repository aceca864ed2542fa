// Test helper: writes raw HTTP/2 frames, for playing a hostile peer. Tests only: the
// frame writer itself is h2/frame_writer.h (shared with the fuzz targets); this adds
// Catch checks.
#pragma once

#include <catch2/catch.hpp>
#include <string>

#include "ztunnel/h2/frame_writer.h"

namespace zt::h2::testing {

// Frames is a FrameWriter whose header blocks must encode (a test fails otherwise).
struct Frames : FrameWriter {
  std::string Block(const Headers& headers) {
    auto block = FrameWriter::Block(headers);
    REQUIRE(block.has_value());
    return *block;
  }
  std::string Connect(int32_t stream, const std::string& authority = "10.0.0.2:80") {
    return Frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, stream,
                 Block({{":method", "CONNECT"}, {":authority", authority}}));
  }
};

}  // namespace zt::h2::testing
