#include "ztunnel/io/probe.h"

#include <liburing.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace zt::io {
namespace {

std::string SysctlValue(const char* path) {
  std::ifstream in(path);
  std::string value;
  if (in) std::getline(in, value);
  return value;
}

}  // namespace

std::string ProbeIoUring() {
  io_uring ring{};
  const int rc = io_uring_queue_init(8, &ring, 0);
  if (rc < 0) {
    const int err = -rc;
    std::string line = "io_uring is unavailable: io_uring_setup failed: ";
    line += std::strerror(err);
    if (err == ENOSYS) {
      line += ". The kernel was built without io_uring (needs Linux >= 6.0 with CONFIG_IO_URING)";
    } else if (err == EPERM || err == EACCES) {
      const std::string disabled = SysctlValue("/proc/sys/kernel/io_uring_disabled");
      if (!disabled.empty() && disabled != "0") {
        line += ". The sysctl kernel.io_uring_disabled=" + disabled +
                " forbids it: set it to 0 on the node";
      } else {
        line +=
            ". A seccomp profile blocks it (Docker's and containerd's default profiles do): run "
            "ztunnel with seccompProfile type Unconfined, or a profile that allows "
            "io_uring_setup, io_uring_enter and io_uring_register";
      }
    } else if (err == ENOMEM) {
      line += ". Raise RLIMIT_MEMLOCK (ulimit -l) for the ztunnel process";
    }
    return line;
  }
  std::string missing;
  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring)) {
    const std::vector<std::pair<int, const char*>> needed = {
        {IORING_OP_ACCEPT, "ACCEPT"},
        {IORING_OP_CONNECT, "CONNECT"},
        {IORING_OP_RECV, "RECV"},
        {IORING_OP_SEND, "SEND"},
        {IORING_OP_TIMEOUT, "TIMEOUT"},
        {IORING_OP_LINK_TIMEOUT, "LINK_TIMEOUT"},
        {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
        {IORING_OP_CLOSE, "CLOSE"},
        {IORING_OP_POLL_ADD, "POLL_ADD"},
    };
    for (const auto& [op, name] : needed) {
      if (!io_uring_opcode_supported(probe, op)) {
        if (!missing.empty()) missing += ", ";
        missing += name;
      }
    }
    io_uring_free_probe(probe);
  } else {
    missing = "IORING_REGISTER_PROBE";
  }
  // Provided-buffer rings (5.19) and multishot receive (6.0) have no opcode of their
  // own: try registering a one-entry buffer ring.
  if (missing.empty()) {
    void* mem = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(mem);
    reg.ring_entries = 1;
    reg.bgid = 0;
    const int reg_rc = mem == MAP_FAILED ? -ENOMEM : io_uring_register_buf_ring(&ring, &reg, 0);
    if (reg_rc < 0) {
      missing = "provided-buffer rings (" + std::string(std::strerror(-reg_rc)) + ")";
    } else {
      io_uring_unregister_buf_ring(&ring, 0);
    }
    if (mem != MAP_FAILED) munmap(mem, 4096);
  }
  io_uring_queue_exit(&ring);
  if (!missing.empty()) {
    return "io_uring is too old on this kernel: missing " + missing +
           "; ztunnel needs Linux >= 6.0";
  }
  return "";
}

}  // namespace zt::io
