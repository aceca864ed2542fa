#include "ztunnel/metrics/metrics.h"

#include <dirent.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <vector>

namespace zt::metrics {
namespace {

prometheus::MetricFamily Family(const char* name, const char* help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
  return f;
}

double ResidentBytes() {
  long pages_total = 0, pages_resident = 0;
  std::ifstream statm("/proc/self/statm");
  statm >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

double VirtualBytes() {
  long pages_total = 0;
  std::ifstream statm("/proc/self/statm");
  statm >> pages_total;
  return static_cast<double>(pages_total) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

double CpuSeconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

double OpenFds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  double n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n - 1;  // the directory's own fd
}

}  // namespace

// ProcessCollector reads the process_* metrics at each scrape.
class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    return {
        Family("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge,
               ResidentBytes()),
        Family("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge,
               VirtualBytes()),
        Family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
               MetricType::Counter, CpuSeconds()),
        Family("process_open_fds", "Number of open file descriptors.", MetricType::Gauge,
               OpenFds()),
        Family("process_start_time_seconds",
               "Start time of the process since unix epoch in seconds.", MetricType::Gauge, start_),
    };
  }

 private:
  const double start_ =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      process_(std::make_shared<ProcessCollector>()) {
  tcp_ = std::make_unique<TcpMetrics>(*registry_);
  overload_ = std::make_unique<OverloadMetrics>(*registry_);
  active_proxies_ = &prometheus::BuildGauge()
                         .Name("workload_manager_active_proxy_count")
                         .Help("The total number of pods the node process serves")
                         .Register(*registry_)
                         .Add({});
  proxies_started_ = &prometheus::BuildCounter()
                          .Name("workload_manager_proxies_started_total")
                          .Help("The total number of pods whose proxying started")
                          .Register(*registry_)
                          .Add({});
  proxies_stopped_ = &prometheus::BuildCounter()
                          .Name("workload_manager_proxies_stopped_total")
                          .Help("The total number of pods whose proxying stopped")
                          .Register(*registry_)
                          .Add({});
  inpod_connected_ = &prometheus::BuildGauge()
                          .Name("ztunnel_inpod_connected")
                          .Help("1 while the node process has the node agent's ZDS snapshot")
                          .Register(*registry_)
                          .Add({});
  auto& reloads = prometheus::BuildCounter()
                      .Name("ztunnel_local_config_reloads_total")
                      .Help("Local config file reloads, by result (applied or rejected)")
                      .Register(*registry_);
  reloads_applied_ = &reloads.Add({{"result", "applied"}});
  reloads_rejected_ = &reloads.Add({{"result", "rejected"}});
}

Metrics::~Metrics() = default;

void Metrics::RecordBuild(const std::string& tag) {
  prometheus::BuildGauge()
      .Name("istio_build")
      .Help("Istio component build info")
      .Register(*registry_)
      .Add({{"component", "ztunnel"}, {"tag", tag}})
      .Set(1);
}

void Metrics::ProxyStarted() {
  active_proxies_->Increment();
  proxies_started_->Increment();
}

void Metrics::ProxyStopped() {
  active_proxies_->Decrement();
  proxies_stopped_->Increment();
}

void Metrics::AgentConnected(bool up) { inpod_connected_->Set(up ? 1 : 0); }

void Metrics::ConfigReload(bool applied) {
  (applied ? reloads_applied_ : reloads_rejected_)->Increment();
}

std::string Metrics::Render() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (auto& f : process_->Collect()) families.push_back(std::move(f));
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace zt::metrics
