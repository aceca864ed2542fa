#include "ztunnel/io/fiber.h"

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <string>

#include "ztunnel/io/ops.h"
#include "ztunnel/io/stack_pool.h"
#include "ztunnel/io/testing.h"

namespace zt::io {
namespace {

using testing::LoopThread;

TEST_CASE("Fibers suspend and resume in order", "[io]") {
  LoopThread lt;
  std::string trace = lt.Run([&] {
    std::string t;
    Fiber* a = nullptr;
    testing::SpawnOrDie(lt.loop(), [&] {
      a = Fiber::Current();
      t += "a1 ";
      a->Suspend();
      t += "a2 ";
    });
    t += "main ";
    CHECK(Fiber::Current() == nullptr);
    a->Resume();  // runs to the end; the fiber frees itself
    t += "end";
    return t;
  });
  CHECK(trace == "a1 main a2 end");
}

TEST_CASE("Finished fibers return their stacks to the pool", "[io]") {
  LoopThread lt;
  auto [live, cached] = lt.Run([&] {
    for (int i = 0; i < 100; ++i) REQUIRE(Fiber::Spawn(lt.loop(), [] {}));
    return std::make_pair(lt.loop().stacks().live(), lt.loop().stacks().cached());
  });
  CHECK(live == 0);
  CHECK(cached == 1);  // each fiber reused the same stack
}

TEST_CASE("Many suspended fibers each hold a stack until they end", "[io]") {
  LoopThread lt;
  constexpr int kFibers = 200;
  auto [live_during, live_after, cached_after] = lt.RunFiber([&] {
    int done = 0;
    for (int i = 0; i < kFibers; ++i) {
      testing::SpawnOrDie(lt.loop(), [&] {
        Sleep(lt.loop(), std::chrono::milliseconds(5));
        ++done;
      });
    }
    const size_t during = lt.loop().stacks().live();
    while (done < kFibers) Sleep(lt.loop(), std::chrono::milliseconds(1));
    return std::make_tuple(during, lt.loop().stacks().live(), lt.loop().stacks().cached());
  });
  CHECK(live_during == kFibers + 1);  // +1: the fiber running this code
  CHECK(live_after == 1);
  CHECK(cached_after <= 64);  // the pool keeps a bounded number of free stacks
}

// Overflow recurses far past a 16 KiB stack; volatile keeps the frames real.
int Overflow(int depth) {
  volatile char frame[512];
  frame[0] = static_cast<char>(depth);
  if (depth > 100'000) return frame[0];
  return Overflow(depth + 1) + frame[0];
}

TEST_CASE("A fiber stack overflow hits the guard page", "[io]") {
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    StackPool pool(16 * 1024);
    boost::context::fiber f(std::allocator_arg, PooledStack{&pool},
                            [](boost::context::fiber&& caller) {
                              Overflow(0);
                              return std::move(caller);
                            });
    std::move(f).resume();
    _exit(0);  // not reached if the guard page works
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer catches the SEGV itself, reports it and exits non-zero.
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) != 0);
#else
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGSEGV);
#endif
}

}  // namespace
}  // namespace zt::io
