#include "ztunnel/io/buffer_ring.h"

#include <catch2/catch.hpp>

#include "ztunnel/io/loop.h"
#include "ztunnel/io/testing.h"

namespace zt::io {
namespace {

TEST_CASE("BufferRing rejects sizes that are not powers of two", "[io]") {
  testing::LoopThread lt;
  auto bad = lt.Run([&] { return BufferRing::Create(lt.loop(), 7, 100, 4096).ok(); });
  CHECK_FALSE(bad);
}

TEST_CASE("Claimed buffers count as in use until released", "[io]") {
  testing::LoopThread lt;
  auto counts = lt.Run([&] {
    BufferRing& ring = lt.loop().buffers();
    const uint32_t before = ring.in_use();
    ProvidedBuffer a = ring.Claim(3u << IORING_CQE_BUFFER_SHIFT, 100);
    ProvidedBuffer b = ring.Claim(4u << IORING_CQE_BUFFER_SHIFT, 50);
    const uint32_t during = ring.in_use();
    CHECK(a.data().size() == 100);
    a.Consume(60);
    CHECK(a.data().size() == 40);
    a.Consume(40);
    CHECK(a.empty());
    ProvidedBuffer moved = std::move(b);
    CHECK_FALSE(b);
    a.Release();
    const uint32_t after_one = ring.in_use();
    moved = ProvidedBuffer();
    return std::make_tuple(before, during, after_one, ring.in_use());
  });
  CHECK(std::get<0>(counts) == 0);
  CHECK(std::get<1>(counts) == 2);
  CHECK(std::get<2>(counts) == 1);
  CHECK(std::get<3>(counts) == 0);
}

}  // namespace
}  // namespace zt::io
