// ztunnel: wiring only. Parse options, probe io_uring, open listeners, start the
// workers, wait for a signal, drain, exit.
#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <variant>
#include <vector>

#include "ztunnel/config/options.h"
#include "ztunnel/core/drain.h"
#include "ztunnel/core/duration.h"
#include "ztunnel/core/log.h"
#include "ztunnel/io/address.h"
#include "ztunnel/io/probe.h"
#include "ztunnel/io/socket.h"
#include "ztunnel/proxy/balancer.h"
#include "ztunnel/proxy/worker.h"

namespace {

using namespace zt;

// Fatal prints one line on stderr and exits non-zero: the contract for bad input.
[[noreturn]] void Fatal(const std::string& message) {
  std::fprintf(stderr, "ztunnel: %s\n", message.c_str());
  std::exit(1);
}

// RaiseFdLimit lifts the soft open-file limit to the hard one: every relayed
// connection needs two descriptors.
void RaiseFdLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

const char* SignalName(int sig) { return sig == SIGTERM ? "SIGTERM" : "SIGINT"; }

}  // namespace

int main(int argc, char** argv) {
  auto parsed =
      config::ParseOptions(argc, argv, [](const char* name) { return std::getenv(name); });
  if (auto* err = std::get_if<config::ParseError>(&parsed)) {
    std::fprintf(stderr, "ztunnel: %s\n", err->message.c_str());
    return 2;
  }
  const config::Options& opts = std::get<config::Options>(parsed);
  if (opts.help) {
    std::fputs(config::HelpText().c_str(), stdout);
    return 0;
  }
  if (opts.version) {
    std::printf("ztunnel %s\n", ZTUNNEL_VERSION);
    return 0;
  }
  log::SetLevel(opts.log_level);

  auto outbound_addr = io::SocketAddress::Parse(opts.outbound_listen);
  if (!outbound_addr) {
    std::fprintf(stderr,
                 "ztunnel: invalid value \"%s\" for --outbound-listen: expected IP:PORT, e.g. "
                 "127.0.0.1:15001 or [::1]:15001\n",
                 opts.outbound_listen.c_str());
    return 2;
  }

  if (const std::string problem = io::ProbeIoUring(); !problem.empty()) Fatal(problem);
  RaiseFdLimit();

  // Signals are taken by sigwait on the main thread only; workers never see them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto listener = io::Listen(*outbound_addr, io::ListenOptions{});
  if (!listener) {
    Fatal("cannot listen on " + outbound_addr->ToString() +
          " (outbound): " + listener.error().Message());
  }

  proxy::WorkerOptions worker_options;
  worker_options.loop.buffer_size = opts.buffer_size;
  worker_options.loop.buffer_count = opts.buffer_count;
  worker_options.outbound.mark = opts.mark;
  worker_options.outbound.connect_timeout = opts.connect_timeout;

  DrainTrigger drain;
  proxy::Balancer balancer(opts.workers);
  // Workers outlive all worker threads: a worker may post to another until the end.
  std::vector<std::unique_ptr<proxy::Worker>> workers;
  for (int i = 0; i < opts.workers; ++i) {
    workers.push_back(std::make_unique<proxy::Worker>(i, listener->get(), worker_options,
                                                      drain.Watcher(), balancer));
  }
  std::vector<std::thread> threads;
  std::vector<std::atomic<bool>> ready(static_cast<size_t>(opts.workers));
  std::atomic<int> failed{0};
  for (int i = 0; i < opts.workers; ++i) {
    threads.emplace_back([&, i] {
      if (Status s = workers[static_cast<size_t>(i)]->Run(&ready[static_cast<size_t>(i)]); !s) {
        ZT_ERROR("proxy", "worker {} could not start: {}", i, s.error().Message());
        failed.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < opts.workers; ++i) {
    while (!ready[static_cast<size_t>(i)].load() && failed.load() == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  if (failed.load() > 0) {
    drain.Start(std::chrono::milliseconds(0));
    for (auto& t : threads) t.join();
    Fatal("a worker failed to start (see the log above)");
  }
  ZT_INFO("app", "ztunnel {} ready: outbound on {}, {} workers, drain timeout {}", ZTUNNEL_VERSION,
          outbound_addr->ToString(), opts.workers, FormatDuration(opts.drain_timeout));

  int sig = 0;
  sigwait(&signals, &sig);
  ZT_INFO("app", "received {}: draining (stop accepting, live connections have {})",
          SignalName(sig), FormatDuration(opts.drain_timeout));
  drain.Start(opts.drain_timeout);

  // A second signal while draining ends the process at once.
  std::thread second([&] {
    int again = 0;
    sigwait(&signals, &again);
    ZT_WARN("app", "received {} while draining: exiting now", SignalName(again));
    std::_Exit(1);
  });
  second.detach();

  for (auto& t : threads) t.join();
  ZT_INFO("app", "drained; exiting");
  return 0;
}
