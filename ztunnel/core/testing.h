// Test helper: what a function wrote to stderr (where logs go). Tests only.
#pragma once

#include <stdio.h>
#include <unistd.h>

#include <functional>
#include <string>

#include "ztunnel/core/log.h"

namespace zt::testing {

/// CaptureStderr runs `fn` with stderr sent to a temporary file, at log level info, and
/// returns what was written.
inline std::string CaptureStderr(const std::function<void()>& fn) {
  const log::Level saved_level = log::GetLevel();
  log::SetLevel(log::Level::kInfo);
  FILE* tmp = tmpfile();
  if (tmp == nullptr) return "tmpfile failed";
  const int saved = dup(STDERR_FILENO);
  dup2(fileno(tmp), STDERR_FILENO);
  fn();
  dup2(saved, STDERR_FILENO);
  close(saved);
  log::SetLevel(saved_level);
  std::string out;
  rewind(tmp);
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), tmp)) > 0;) out.append(buf, n);
  fclose(tmp);
  return out;
}

}  // namespace zt::testing
