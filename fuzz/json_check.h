// A strict JSON validator for fuzz targets (RFC 8259: one value, UTF-8, no raw control
// characters in strings, no trailing garbage). It only says yes or no: the targets use
// it to check that what we render for operators (/config_dump, JSON logs) parses.
#pragma once

#include <cstddef>
#include <string_view>

namespace zt::fuzz {

class JsonChecker {
 public:
  explicit JsonChecker(std::string_view text) : s_(text) {}

  /// Valid is true when the text is exactly one JSON value (whitespace around it).
  bool Valid() {
    Space();
    if (!Value(0)) return false;
    Space();
    return at_ == s_.size();
  }

 private:
  bool Value(int depth) {
    if (depth > 64 || at_ >= s_.size()) return false;
    switch (s_[at_]) {
      case '{':
        return Object(depth);
      case '[':
        return Array(depth);
      case '"':
        return String();
      case 't':
        return Word("true");
      case 'f':
        return Word("false");
      case 'n':
        return Word("null");
      default:
        return Number();
    }
  }
  bool Object(int depth) {
    ++at_;
    Space();
    if (Peek() == '}') return ++at_, true;
    for (;;) {
      Space();
      if (Peek() != '"' || !String()) return false;
      Space();
      if (Peek() != ':') return false;
      ++at_;
      Space();
      if (!Value(depth + 1)) return false;
      Space();
      if (Peek() == ',') {
        ++at_;
        continue;
      }
      if (Peek() != '}') return false;
      ++at_;
      return true;
    }
  }
  bool Array(int depth) {
    ++at_;
    Space();
    if (Peek() == ']') return ++at_, true;
    for (;;) {
      Space();
      if (!Value(depth + 1)) return false;
      Space();
      if (Peek() == ',') {
        ++at_;
        continue;
      }
      if (Peek() != ']') return false;
      ++at_;
      return true;
    }
  }
  bool String() {
    ++at_;  // the opening quote
    while (at_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[at_]);
      if (c == '"') return ++at_, true;
      if (c < 0x20) return false;
      if (c == '\\') {
        ++at_;
        const char e = Peek();
        if (e == 'u') {
          for (int i = 1; i <= 4; ++i) {
            if (!Hex(at_ + i < s_.size() ? s_[at_ + i] : '\0')) return false;
          }
          at_ += 5;
        } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                   e == 'r' || e == 't') {
          ++at_;
        } else {
          return false;
        }
        continue;
      }
      if (c < 0x80) {
        ++at_;
        continue;
      }
      if (!Utf8()) return false;
    }
    return false;
  }
  // Utf8 takes one well-formed multi-byte UTF-8 sequence (no overlongs, surrogates
  // or code points past U+10FFFF).
  bool Utf8() {
    const auto b0 = static_cast<unsigned char>(s_[at_]);
    size_t n;
    unsigned lo = 0x80, hi = 0xbf;
    if (b0 >= 0xc2 && b0 <= 0xdf) {
      n = 1;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
      n = 2;
      if (b0 == 0xe0) lo = 0xa0;
      if (b0 == 0xed) hi = 0x9f;
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      n = 3;
      if (b0 == 0xf0) lo = 0x90;
      if (b0 == 0xf4) hi = 0x8f;
    } else {
      return false;
    }
    if (at_ + n >= s_.size()) return false;
    for (size_t i = 1; i <= n; ++i) {
      const auto b = static_cast<unsigned char>(s_[at_ + i]);
      if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xbf)) return false;
    }
    at_ += n + 1;
    return true;
  }
  bool Number() {
    const size_t start = at_;
    if (Peek() == '-') ++at_;
    if (Peek() == '0') {
      ++at_;
    } else if (Digit(Peek())) {
      while (Digit(Peek())) ++at_;
    } else {
      return false;
    }
    if (Peek() == '.') {
      ++at_;
      if (!Digit(Peek())) return false;
      while (Digit(Peek())) ++at_;
    }
    if (Peek() == 'e' || Peek() == 'E') {
      ++at_;
      if (Peek() == '+' || Peek() == '-') ++at_;
      if (!Digit(Peek())) return false;
      while (Digit(Peek())) ++at_;
    }
    return at_ > start;
  }
  bool Word(std::string_view w) {
    if (s_.substr(at_, w.size()) != w) return false;
    at_ += w.size();
    return true;
  }
  void Space() {
    while (at_ < s_.size() &&
           (s_[at_] == ' ' || s_[at_] == '\t' || s_[at_] == '\n' || s_[at_] == '\r')) {
      ++at_;
    }
  }
  char Peek() const { return at_ < s_.size() ? s_[at_] : '\0'; }
  static bool Digit(char c) { return c >= '0' && c <= '9'; }
  static bool Hex(char c) { return Digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

  std::string_view s_;
  size_t at_ = 0;
};

/// ValidJson is JsonChecker(text).Valid().
inline bool ValidJson(std::string_view text) { return JsonChecker(text).Valid(); }

}  // namespace zt::fuzz
