#include "ztunnel/app/mesh_start.h"

#include <string>

#include "ztunnel/app/startup.h"
#include "ztunnel/core/log.h"
#include "ztunnel/identity/ca.h"

namespace zt::app {

proxy::WorkerOptions WorkerOptionsFrom(const config::Options& opts, metrics::Metrics& metrics) {
  proxy::WorkerOptions o;
  o.loop.buffer_size = opts.buffer_size;
  o.loop.buffer_count = opts.buffer_count;
  o.outbound.mark = opts.mark;
  o.outbound.connect_timeout = opts.connect_timeout;
  o.overload = &metrics.overload();
  o.connect_limits = {opts.max_pending_connects, opts.max_pending_connects_per_source};
  o.inbound = {.mark = opts.mark,
               .connect_timeout = opts.connect_timeout,
               .max_handshakes = opts.max_handshakes,
               .response_baggage = opts.response_baggage};
  o.pool = {.mark = opts.mark, .connect_timeout = opts.connect_timeout};
  o.cert_wait = opts.connect_timeout;
  return o;
}

void StartMesh(const config::Options& opts, admin::Readiness& readiness, metrics::Metrics& metrics,
               MeshStart& out, proxy::WorkerOptions& worker_options) {
  const auto inbound_addr =
      ParseListenOrExit(opts.inbound_listen, "inbound-listen", "0.0.0.0:15008");
  const auto plaintext_addr =
      ParseListenOrExit(opts.inbound_plaintext_listen, "inbound-plaintext-listen", "0.0.0.0:15006");
  if (opts.inpod && opts.xds_address.empty()) WaitForLocalConfig(opts.local_config);
  std::string why;
  std::shared_ptr<identity::CaClient> ca;
  if (opts.ca_address.empty()) {
    auto local = identity::LocalCa::Open(
        {opts.ca_dir, opts.ca_generate, opts.trust_domain, opts.cert_ttl}, &why);
    if (!local) Fatal("cannot open the CA in " + opts.ca_dir + ": " + why);
    ca = *local;
  }
  if (!opts.xds_address.empty()) readiness.Set("xds", true);  // until istiod's first push
  out.control = control::ControlPlane::Start(ControlFromOptions(opts), ca, &why);
  if (!out.control) Fatal(why);
  if (opts.xds_address.empty()) {
    ZT_INFO("app", "local config {}: {} workloads, {} on this node (\"{}\")", opts.local_config,
            out.control->state().Load()->workloads().size(), out.control->local_workloads(),
            opts.node_name);
  } else {
    ZT_INFO("app", "state from istiod at {} (node \"{}\"), certificates from {}", opts.xds_address,
            opts.node_name, opts.ca_address.empty() ? "the local CA" : opts.ca_address);
  }
  out.mesh = {&out.control->state(), &out.control->certs(), opts.node_name, opts.network,
              &metrics.tcp()};
  out.inbound_fd = ListenOrDie(inbound_addr, "inbound HBONE");
  out.plaintext_fd = ListenOrDie(plaintext_addr, "inbound plaintext");
  worker_options.mesh = &out.mesh;
  worker_options.inbound_listen_fd = out.inbound_fd.get();
  worker_options.inbound_plaintext_listen_fd = out.plaintext_fd.get();
}

}  // namespace zt::app
