// Conversion of Istio's xDS resources (istio.workload.Address, istio.security.
// Authorization) into the state's plain types. Each function checks what the data
// path relies on and says, on failure, which field of which resource is wrong: a bad
// resource is NACKed on its own while the rest of the response applies.
#pragma once

#include <string>
#include <string_view>

#include "ztunnel/core/result.h"
#include "ztunnel/state/authz.h"
#include "ztunnel/state/workload.h"
#include "ztunnel/xds/authorization.pb.h"
#include "ztunnel/xds/workload.pb.h"

namespace zt::xds {

/// kAddressType and kAuthorizationType are the type URLs Istio's ztunnel subscribes to.
inline constexpr std::string_view kAddressType = "type.googleapis.com/istio.workload.Address";
inline constexpr std::string_view kAuthorizationType =
    "type.googleapis.com/istio.security.Authorization";

/// ToWorkload converts a workload; `*error` names the field on failure.
bool ToWorkload(const istio::workload::Workload& in, state::Workload* out, std::string* error);
/// ToService converts a service.
bool ToService(const istio::workload::Service& in, state::Service* out, std::string* error);
/// ToPolicy converts an authorization policy.
bool ToPolicy(const istio::security::Authorization& in, state::Policy* out, std::string* error);

/// ServiceResourceName is the xDS name of a service: "namespace/hostname".
std::string ServiceResourceName(const istio::workload::Service& s);

}  // namespace zt::xds
