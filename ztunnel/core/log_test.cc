#include "ztunnel/core/log.h"

#include <catch2/catch.hpp>
#include <string>

#include "ztunnel/core/testing.h"

namespace zt::log {
namespace {

TEST_CASE("ParseLevel accepts every level name in any case", "[core]") {
  CHECK(ParseLevel("trace") == Level::kTrace);
  CHECK(ParseLevel("DEBUG") == Level::kDebug);
  CHECK(ParseLevel("Info") == Level::kInfo);
  CHECK(ParseLevel("warn") == Level::kWarn);
  CHECK(ParseLevel("warning") == Level::kWarn);
  CHECK(ParseLevel("error") == Level::kError);
  CHECK(ParseLevel("off") == Level::kOff);
  CHECK_FALSE(ParseLevel("verbose").has_value());
  CHECK_FALSE(ParseLevel("").has_value());
}

TEST_CASE("The level changes at run time and gates formatting", "[core]") {
  const Level saved = GetLevel();
  SetLevel(Level::kWarn);
  CHECK_FALSE(Enabled(Level::kInfo));
  CHECK(Enabled(Level::kWarn));
  CHECK(Enabled(Level::kError));
  SetLevel(Level::kTrace);
  CHECK(Enabled(Level::kTrace));
  SetLevel(Level::kOff);
  CHECK_FALSE(Enabled(Level::kError));
  SetLevel(saved);
}

using testing::CaptureStderr;

TEST_CASE("Structured fields come out as key=value text, quoted when needed", "[core]") {
  REQUIRE(GetFormat() == Format::kText);
  const std::string line = CaptureStderr([] {
    LogFields(Level::kInfo, "access", "connection complete",
              {{"src.addr", "10.0.0.1:5000"},
               {"bytes_sent", "42", true},
               {"error", "connection reset \"by\" peer"},
               {"empty", ""}});
  });
  CHECK(line.find("\tinfo\taccess\tconnection complete src.addr=10.0.0.1:5000 bytes_sent=42 "
                  "error=\"connection reset \\\"by\\\" peer\" empty=\"\"\n") != std::string::npos);
}

TEST_CASE("JSON format writes one object per line with the fields as keys", "[core]") {
  SetFormat(Format::kJson);
  const std::string line = CaptureStderr([] {
    LogFields(Level::kWarn, "access", "connection denied",
              {{"src.addr", "10.0.0.1:5000"},
               {"bytes_sent", "42", true},
               {"reason", "line\nbreak \"q\" \\ \x01"}});
    ZT_INFO("proxy", "plain {}", "message");
  });
  SetFormat(Format::kText);
  const auto first = line.substr(0, line.find('\n'));
  CHECK(first.starts_with("{\"time\":\""));
  CHECK(first.find(R"("level":"warn","scope":"access","message":"connection denied",)"
                   R"("src.addr":"10.0.0.1:5000","bytes_sent":42,)"
                   R"("reason":"line\nbreak \"q\" \\ \u0001"})") != std::string::npos);
  CHECK(line.find(R"("scope":"proxy","message":"plain message"})") != std::string::npos);
  CHECK(ParseFormat("json") == Format::kJson);
  CHECK(ParseFormat("text") == Format::kText);
  CHECK_FALSE(ParseFormat("yaml").has_value());
}

// Found by fuzz/local_config_fuzz.cc: a config string with a stray 0xe2 byte made
// /config_dump invalid JSON.
TEST_CASE("JsonEscape keeps UTF-8 and replaces bytes that are not", "[core]") {
  CHECK(JsonEscape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  CHECK(JsonEscape("a\xe2shop") == "\"a\\ufffdshop\"");              // a lead byte alone
  CHECK(JsonEscape("\x80\xbf") == "\"\\ufffd\\ufffd\"");             // continuation bytes alone
  CHECK(JsonEscape("\xc0\xaf") == "\"\\ufffd\\ufffd\"");             // an overlong '/'
  CHECK(JsonEscape("\xed\xa0\x80") == "\"\\ufffd\\ufffd\\ufffd\"");  // a surrogate
  CHECK(JsonEscape("\xf4\x90\x80\x80") == "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");  // past U+10FFFF
  CHECK(JsonEscape("end\xe2\x82") == "\"end\\ufffd\\ufffd\"");                  // cut short
}

}  // namespace
}  // namespace zt::log
