#include "ztunnel/control/control_plane.h"

#include <future>
#include <utility>

#include "ztunnel/config/local_config.h"
#include "ztunnel/config/local_config_watcher.h"
#include "ztunnel/control/cert_controller.h"
#include "ztunnel/core/log.h"
#include "ztunnel/core/memory_reclaim.h"
#include "ztunnel/io/loop.h"
#include "ztunnel/io/ops.h"

namespace zt::control {

// Runner is what lives on the control thread: its loop and everything driven by it.
class ControlPlane::Runner {
 public:
  Runner(ControlPlane& cp, io::Loop& loop, ControlOptions options,
         std::shared_ptr<identity::CaClient> ca)
      : cp_(cp),
        loop_(loop),
        options_(std::move(options)),
        watcher_(options_.local_config),
        certs_(loop, std::move(ca), cp.certs_, options_.node),
        poll_(loop) {
    certs_.set_on_published([this] {
      if (hooks_.certs_published) hooks_.certs_published();
    });
  }

  // Load reads the first config (watched from before the read, so a change during
  // start-up is not missed) and issues this node's certificates, before the state is
  // published: with a local CA no connection ever waits for one. With xDS it starts
  // the stream instead.
  bool Load(std::string* error) {
    if (options_.xds) {
      xds_ = XdsClient::Create(
          loop_, *options_.xds,
          [this](std::shared_ptr<const state::State> next) { Apply(std::move(next)); }, error);
      if (!xds_) {
        *error = "xDS: " + *error;
        return false;
      }
      xds_->set_on_synced([this] {
        cp_.synced_.store(true);
        if (hooks_.synced) hooks_.synced();
      });
      xds_->Start();
      return true;
    }
    auto first = config::LoadLocalConfig(options_.local_config, error);
    if (!first) {
      *error = "invalid local config: " + *error;
      return false;
    }
    cp_.local_workloads_ = certs_.Reconcile(*first);
    cp_.state_.Publish(std::move(first));
    cp_.synced_.store(true);
    return true;
  }

  // Apply publishes a state istiod sent: certificates first, as for a file.
  void Apply(std::shared_ptr<const state::State> next) {
    certs_.Reconcile(*next);
    cp_.state_.Publish(std::move(next));
    if (hooks_.state_published) hooks_.state_published();
  }

  void StartPolling() {
    poll_.Start(options_.config_poll, [this](bool fired) {
      if (!fired) return;
      if (!options_.xds) ReloadIfChanged();
      if (const size_t freed = reclaimer_.Tick(); freed > 0) {
        ZT_DEBUG("control", "gave {} KiB of freed heap back to the kernel", freed >> 10);
      }
      StartPolling();
    });
  }

  // ReloadIfChanged publishes a changed config; a bad one is logged and ignored.
  void ReloadIfChanged() {
    if (options_.xds) return;  // nothing to reload: istiod pushes
    std::shared_ptr<const state::State> next;
    std::string error;
    switch (watcher_.Poll(&next, &error)) {
      case config::LocalConfigWatcher::Outcome::kUnchanged:
        return;
      case config::LocalConfigWatcher::Outcome::kRejected:
        ZT_ERROR("config", "rejected the new local config, keeping the previous one: {}", error);
        if (hooks_.config_reloaded) hooks_.config_reloaded(false);
        return;
      case config::LocalConfigWatcher::Outcome::kReloaded:
        break;
    }
    // Certificates first (a local CA issues them now), then the state that needs them.
    certs_.Reconcile(*next);
    cp_.state_.Publish(next);
    if (hooks_.config_reloaded) hooks_.config_reloaded(true);
    if (hooks_.state_published) hooks_.state_published();
    ZT_INFO("config", "reloaded the local config: {} workloads, {} policies",
            next->workloads().size(), next->policies().size());
  }

  void SetHooks(ControlHooks hooks) {
    hooks_ = std::move(hooks);
    if (hooks_.state_published) hooks_.state_published();
    if (hooks_.certs_published) hooks_.certs_published();
    if (cp_.synced_.load() && hooks_.synced) hooks_.synced();
  }

  io::Loop& loop() { return loop_; }

 private:
  ControlPlane& cp_;
  io::Loop& loop_;
  ControlOptions options_;
  config::LocalConfigWatcher watcher_;
  CertController certs_;
  io::Timer poll_;
  MemoryReclaimer reclaimer_;  // after a burst, freed heap goes back to the kernel
  ControlHooks hooks_;
  std::unique_ptr<XdsClient> xds_;  // with xDS: the stream to istiod
};

std::unique_ptr<ControlPlane> ControlPlane::Start(ControlOptions options,
                                                  std::shared_ptr<identity::CaClient> ca,
                                                  std::string* error) {
  std::unique_ptr<ControlPlane> cp(new ControlPlane());
  std::promise<bool> started;
  auto ok = started.get_future();
  cp->thread_ = std::thread([&, raw = cp.get()] {
    raw->Run([&started](bool good) { started.set_value(good); }, std::move(options), std::move(ca),
             error);
  });
  if (!ok.get()) {
    cp->thread_.join();
    return nullptr;
  }
  return cp;
}

void ControlPlane::Run(std::function<void(bool ok)> started, ControlOptions options,
                       std::shared_ptr<identity::CaClient> ca, std::string* error) {
  // A small ring: the control thread carries a few connections (CA, xDS), not pods'.
  io::LoopOptions loop_options;
  loop_options.entries = 64;
  loop_options.buffer_count = 16;
  loop_options.buffer_size = 4096;
  auto loop = io::Loop::Create(loop_options);
  if (!loop) {
    *error = "cannot start the control thread's io_uring: " + loop.error().Message();
    return started(false);
  }
  if (options.istio_ca) {
    // Made here: its channel lives on this loop.
    ca = IstioCa::Create(**loop, *options.istio_ca, error);
    if (!ca) {
      *error = "Istio CA: " + *error;
      return started(false);
    }
  }
  {
    Runner runner(*this, **loop, std::move(options), std::move(ca));
    if (!runner.Load(error)) return started(false);
    runner.StartPolling();
    runner_ = &runner;
    started(true);  // `error` and `options` belong to Start's caller: not used past here
    (*loop)->Run();
    runner_ = nullptr;
  }
}

void ControlPlane::RunOnControl(std::function<void()> fn) {
  if (runner_ == nullptr) return;
  std::promise<void> done;
  runner_->loop().Post([&] {
    fn();
    done.set_value();
  });
  done.get_future().wait();
}

void ControlPlane::SetHooks(ControlHooks hooks) {
  RunOnControl([this, &hooks] { runner_->SetHooks(std::move(hooks)); });
}

void ControlPlane::ReloadNow() {
  RunOnControl([this] { runner_->ReloadIfChanged(); });
}

void ControlPlane::Stop() {
  if (!thread_.joinable()) return;
  RunOnControl([this] { runner_->loop().Stop(); });
  thread_.join();
}

ControlPlane::~ControlPlane() { Stop(); }

}  // namespace zt::control
