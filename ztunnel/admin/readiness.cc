#include "ztunnel/admin/readiness.h"

namespace zt::admin {

void Readiness::Set(const std::string& task, bool pending) {
  std::lock_guard lock(mu_);
  if (pending) {
    pending_.insert(task);
  } else {
    pending_.erase(task);
  }
}

std::vector<std::string> Readiness::Pending() const {
  std::lock_guard lock(mu_);
  return {pending_.begin(), pending_.end()};
}

HttpHandler ReadinessHandler(const Readiness& readiness) {
  return [&readiness](const HttpRequest& req) {
    if (req.path != "/healthz/ready") return HttpResponse{404, "text/plain", "not found\n"};
    const std::vector<std::string> pending = readiness.Pending();
    if (pending.empty()) return HttpResponse{200, "text/plain", "ready\n"};
    std::string body = "not ready:";
    for (const std::string& t : pending) body += " " + t + ";";
    body.back() = '\n';
    return HttpResponse{500, "text/plain", body};
  };
}

}  // namespace zt::admin
