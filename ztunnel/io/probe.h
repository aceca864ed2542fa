// Start-up probe: is io_uring usable here, with every feature the data path needs?
#pragma once

#include <string>

namespace zt::io {

/// ProbeIoUring returns an empty string when io_uring works with the features we use
/// (multishot accept and receive, provided-buffer rings, linked timeouts, cancel),
/// otherwise one line saying what is missing and how to fix it.
std::string ProbeIoUring();

}  // namespace zt::io
