// Test helper: a Loop running on its own thread, and a way to run code on a fiber
// there and wait for it from the test thread. For tests only.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <vector>

#include "ztunnel/io/fiber.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/socket.h"

namespace zt::io::testing {

/// Listener is a loopback listening socket on a port the kernel chose.
struct Listener {
  UniqueFd fd;
  SocketAddress addr;
};

/// ListenLoopback listens on 127.0.0.1:0; it throws (a test failure) if it cannot.
inline Listener ListenLoopback(int backlog = 128) {
  ListenOptions options;
  options.backlog = backlog;
  auto l = Listen(SocketAddress::Loopback4(0), options);
  if (!l) throw std::runtime_error("listen: " + l.error().Message());
  auto addr = LocalAddress(l->get());
  if (!addr) throw std::runtime_error("getsockname: " + addr.error().Message());
  return {std::move(l).value(), *addr};
}

/// BindRefusingLoopback binds 127.0.0.1:0 without listening: every connect to it is
/// refused, and the port stays taken while the returned fd lives (a closed listener's
/// port could be reused by anything on the machine, or be a connect's own source port).
inline Listener BindRefusingLoopback() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const SocketAddress any = SocketAddress::Loopback4(0);
  if (!fd.valid() || ::bind(fd.get(), any.sa(), any.len()) != 0) {
    throw std::runtime_error(std::string("bind 127.0.0.1:0: ") + std::strerror(errno));
  }
  auto addr = LocalAddress(fd.get());
  if (!addr) throw std::runtime_error("getsockname: " + addr.error().Message());
  return {std::move(fd), *addr};
}

/// BlockingConnect connects a plain blocking client socket (the test's side).
inline UniqueFd BlockingConnect(const SocketAddress& addr) {
  UniqueFd fd(::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid() || ::connect(fd.get(), addr.sa(), addr.len()) != 0) {
    throw std::runtime_error("connect to " + addr.ToString() + " failed: " + std::strerror(errno));
  }
  return fd;
}

/// SpawnOrDie spawns a fiber; a test that runs out of fiber stacks is broken anyway.
inline void SpawnOrDie(Loop& loop, std::function<void()> fn) {
  if (!Fiber::Spawn(loop, std::move(fn))) std::abort();
}

/// Subprocess runs a program with its stdout on a pipe (a test peer); the destructor
/// kills it.
class Subprocess {
 public:
  explicit Subprocess(std::vector<std::string> argv) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, cargv[0], &actions, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    out_ = ::fdopen(fds[0], "r");
    if (rc != 0) throw std::runtime_error("cannot run " + argv[0] + ": " + std::strerror(rc));
  }
  ~Subprocess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ != nullptr) ::fclose(out_);
  }
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  /// Line reads one line of its stdout (without the newline; "" at EOF).
  std::string Line() {
    char buf[4096];
    if (::fgets(buf, sizeof(buf), out_) == nullptr) return "";
    std::string s(buf);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }
  /// Wait waits for it to exit and returns its exit status (-1 if killed).
  int Wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
};

/// LoopThread owns a Loop on a thread of its own; the destructor stops and joins it.
class LoopThread {
 public:
  explicit LoopThread(LoopOptions options = {}) {
    std::promise<void> started;
    thread_ = std::thread([&] {
      auto loop = Loop::Create(options);
      if (!loop) {
        started.set_exception(
            std::make_exception_ptr(std::runtime_error("Loop::Create: " + loop.error().Message())));
        return;
      }
      loop_ = std::move(loop).value();
      started.set_value();
      loop_->Run();
      loop_.reset();
    });
    started.get_future().get();
  }
  ~LoopThread() {
    loop_->Post([this] { loop_->Stop(); });
    thread_.join();
  }

  Loop& loop() { return *loop_; }

  /// Run runs fn on the loop thread and returns its result.
  template <typename Fn>
  auto Run(Fn fn) -> std::invoke_result_t<Fn> {
    using R = std::invoke_result_t<Fn>;
    std::promise<R> done;
    loop_->Post([&] {
      if constexpr (std::is_void_v<R>) {
        fn();
        done.set_value();
      } else {
        done.set_value(fn());
      }
    });
    return done.get_future().get();
  }

  /// RunFiber runs fn on a new fiber on the loop and waits until it returns.
  template <typename Fn>
  auto RunFiber(Fn fn) -> std::invoke_result_t<Fn> {
    using R = std::invoke_result_t<Fn>;
    std::promise<R> done;
    loop_->Post([&] {
      SpawnOrDie(*loop_, [&] {
        if constexpr (std::is_void_v<R>) {
          fn();
          done.set_value();
        } else {
          done.set_value(fn());
        }
      });
    });
    return done.get_future().get();
  }

 private:
  std::unique_ptr<Loop> loop_;
  std::thread thread_;
};

}  // namespace zt::io::testing
