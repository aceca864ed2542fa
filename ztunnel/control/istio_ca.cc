#include "ztunnel/control/istio_ca.h"

#include <fmt/format.h>

#include "ztunnel/control/token.h"
#include "ztunnel/core/log.h"
#include "ztunnel/tls/x509.h"
#include "ztunnel/xds/ca.pb.h"

namespace zt::control {
namespace {

constexpr std::string_view kCreateCertificate =
    "/istio.v1.auth.IstioCertificateService/CreateCertificate";

}  // namespace

// Request is one CreateCertificate call: its key, and what the CA answered.
class IstioCa::Request final : public h2::GrpcCallObserver {
 public:
  Request(IstioCa* ca, uint64_t key, tls::SpiffeId id, tls::PrivateKey private_key,
          identity::IssueDone done)
      : ca_(ca),
        key_(key),
        id_(std::move(id)),
        private_key_(std::move(private_key)),
        done_(std::move(done)) {}

  void OnMessage(std::string message) override { response_ = std::move(message); }
  void OnClose(const h2::GrpcStatus& status, const h2::Metadata&) override {
    identity::IssueDone done = std::move(done_);
    std::string why;
    auto creds = status.ok() ? Parse(&why) : Error{Errc::kUnavailable};
    if (!status.ok()) why = "CreateCertificate: " + status.ToString();
    IstioCa* ca = ca_;
    const uint64_t key = key_;
    done(std::move(creds), why);
    ca->requests_.erase(key);  // destroys this
  }

 private:
  Result<tls::Credentials> Parse(std::string* why) {
    istio::v1::auth::IstioCertificateResponse resp;
    if (!resp.ParseFromString(response_)) {
      *why = "the CA's answer does not decode as IstioCertificateResponse";
      return Error{Errc::kInvalidArgument};
    }
    if (resp.cert_chain_size() == 0) {
      *why = "the CA answered with an empty cert_chain";
      return Error{Errc::kInvalidArgument};
    }
    tls::Credentials creds;
    // cert_chain: leaf first, root last; each entry may hold several PEM blocks.
    for (int i = 0; i < resp.cert_chain_size(); ++i) {
      auto certs = tls::Certificate::ChainFromPem(resp.cert_chain(i));
      if (!certs) {
        *why = fmt::format("cert_chain[{}] is not PEM certificates", i);
        return Error{Errc::kInvalidArgument};
      }
      for (auto& c : *certs) creds.chain.push_back(std::move(c));
    }
    // The last is the root when it is self-issued: peers have it already.
    if (creds.chain.size() > 1 && creds.chain.back().is_ca()) creds.chain.pop_back();
    const std::vector<std::string> sans = creds.chain.front().UriSans();
    if (sans.size() != 1 || sans[0] != id_.ToString()) {
      *why = fmt::format("the CA issued a certificate for {} instead of {}",
                         sans.empty() ? "no URI SAN" : sans[0], id_.ToString());
      return Error{Errc::kInvalidArgument};
    }
    if (!tls::KeyMatchesCertificate(private_key_, creds.chain.front())) {
      *why = "the CA's certificate is not for the key we sent";
      return Error{Errc::kInvalidArgument};
    }
    creds.key = std::move(private_key_);
    return creds;
  }

  IstioCa* ca_;
  uint64_t key_;
  tls::SpiffeId id_;
  tls::PrivateKey private_key_;
  identity::IssueDone done_;
  std::string response_;
};

std::shared_ptr<IstioCa> IstioCa::Create(io::Loop& loop, IstioCaOptions options,
                                         std::string* error) {
  std::shared_ptr<IstioCa> ca(new IstioCa(loop, std::move(options)));
  ca->channel_ = GrpcChannel::Create(loop, ca->options_.channel, error);
  if (!ca->channel_) return nullptr;
  return ca;
}

IstioCa::IstioCa(io::Loop& /*loop*/, IstioCaOptions options) : options_(std::move(options)) {}

IstioCa::~IstioCa() {
  channel_.reset();  // pending requests end without calling back
  requests_.clear();
}

void IstioCa::Issue(const tls::SpiffeId& id, identity::IssueDone done) {
  auto key = tls::PrivateKey::GenerateP256();
  if (!key) return done(key.error(), "cannot generate a P-256 key");
  auto csr = tls::CsrPem(*key, {id.ToString()});
  if (!csr) return done(csr.error(), "cannot make the certificate request");
  istio::v1::auth::IstioCertificateRequest req;
  req.set_csr(*csr);
  req.set_validity_duration(options_.ttl.count());
  if (options_.impersonate) {
    (*req.mutable_metadata()->mutable_fields())["ImpersonatedIdentity"].set_string_value(
        id.ToString());
  }
  std::string why;
  const std::string token = ReadToken(options_.token_path, &why);
  if (!why.empty()) return done(Error{Errc::kNotFound}, why + " (the token to ask the CA with)");
  h2::Metadata md = {{"authorization", "Bearer " + token}, {"clusterid", options_.cluster_id}};
  for (const auto& h : options_.headers) md.push_back(h);
  const uint64_t n = next_++;
  auto request = std::make_unique<Request>(this, n, id, std::move(key).value(), std::move(done));
  Request* r = request.get();
  requests_.emplace(n, std::move(request));
  const auto call =
      channel_->Start(std::string(kCreateCertificate), std::move(md), r, options_.timeout);
  if (requests_.count(n) == 0) return;  // failed inside Start (cannot connect)
  channel_->Send(call, req.SerializeAsString());
  channel_->CloseSend(call);
}

}  // namespace zt::control
