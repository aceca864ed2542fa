// The node process's mesh side at start-up: the control plane (local config or
// istiod; the local CA or Istio's) and the inbound listeners, and the workers'
// options that follow from the flags.
#pragma once

#include <memory>

#include "ztunnel/admin/readiness.h"
#include "ztunnel/config/options.h"
#include "ztunnel/control/control_plane.h"
#include "ztunnel/io/fd.h"
#include "ztunnel/metrics/metrics.h"
#include "ztunnel/proxy/mesh.h"
#include "ztunnel/proxy/worker.h"

namespace zt::app {

/// WorkerOptionsFrom is every worker option the flags set, without the mesh.
/// `metrics` must outlive the workers.
proxy::WorkerOptions WorkerOptionsFrom(const config::Options& opts, metrics::Metrics& metrics);

/// MeshStart owns the mesh side: the control plane, the mesh context the workers read
/// and the node's inbound listeners. It must outlive the workers.
struct MeshStart {
  std::unique_ptr<control::ControlPlane> control;
  proxy::Mesh mesh;
  io::UniqueFd inbound_fd, plaintext_fd;
};

/// StartMesh starts the control plane and opens the inbound listeners (fatal on a bad
/// CA, config or address), marks readiness "xds" pending under istiod, and points
/// `worker_options` at the result.
void StartMesh(const config::Options& opts, admin::Readiness& readiness, metrics::Metrics& metrics,
               MeshStart& out, proxy::WorkerOptions& worker_options);

}  // namespace zt::app
