#include "ztunnel/h2/grpc_client.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>

namespace zt::h2 {

const char* GrpcCodeName(GrpcCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i <= 16 ? kNames[i] : "UNKNOWN";
}

std::string GrpcStatus::ToString() const {
  std::string out = GrpcCodeName(code);
  if (!message.empty()) out += ": " + message;
  return out;
}

std::string FormatGrpcTimeout(std::chrono::milliseconds timeout) {
  // At most 8 digits (PROTOCOL-HTTP2.md): the finest unit that fits.
  const int64_t ms = std::max<int64_t>(timeout.count(), 1);
  if (ms < 100'000'000) return std::to_string(ms) + "m";
  const int64_t s = ms / 1000;
  if (s < 100'000'000) return std::to_string(s) + "S";
  return std::to_string(std::min<int64_t>(s / 3600, 99'999'999)) + "H";
}

std::string PercentDecode(std::string_view text) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1]) >= 0 && hex(text[i + 2]) >= 0) {
      out += static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

namespace {

// HttpStatusToGrpc maps an HTTP status of a response without grpc-status
// (grpc/doc/http-grpc-status-mapping.md).
GrpcCode HttpStatusToGrpc(int status) {
  switch (status) {
    case 400:
      return GrpcCode::kInternal;
    case 401:
      return GrpcCode::kUnauthenticated;
    case 403:
      return GrpcCode::kPermissionDenied;
    case 404:
      return GrpcCode::kUnimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcCode::kUnavailable;
    default:
      return GrpcCode::kUnknown;
  }
}

// ResetToGrpc maps an RST_STREAM/GOAWAY error code (PROTOCOL-HTTP2.md "Errors").
GrpcCode ResetToGrpc(uint32_t code) {
  switch (code) {
    case NGHTTP2_REFUSED_STREAM:
      return GrpcCode::kUnavailable;
    case NGHTTP2_CANCEL:
      return GrpcCode::kCancelled;
    case NGHTTP2_ENHANCE_YOUR_CALM:
      return GrpcCode::kResourceExhausted;
    case NGHTTP2_INADEQUATE_SECURITY:
      return GrpcCode::kPermissionDenied;
    default:
      return GrpcCode::kInternal;
  }
}

}  // namespace

struct GrpcClient::Call {
  int32_t id = 0;
  GrpcCallObserver* observer = nullptr;
  std::string send;        // framed messages not yet handed to nghttp2
  size_t send_offset = 0;  // how much of `send` went out
  bool send_closed = false;
  bool deferred = false;  // the data provider waits for Send or CloseSend
  // What the server said.
  bool headers_done = false;  // the first HEADERS block is complete
  int http_status = 0;
  std::string content_type;
  Metadata headers;
  Metadata trailers;
  std::optional<int> grpc_status;
  std::string grpc_message;
  // The message being received.
  std::string recv;
  bool finished = false;  // OnClose ran (a local failure before the stream closed)
};

struct GrpcCallbacks {
  static GrpcClient::Call* CallOf(GrpcClient* c, int32_t id) { return c->Find(id); }

  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    auto* self = static_cast<GrpcClient*>(user);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    GrpcClient::Call* call = CallOf(self, frame->hd.stream_id);
    if (call == nullptr) return 0;
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":status") {
      int status = 0;
      for (char ch : v) status = ch >= '0' && ch <= '9' ? status * 10 + (ch - '0') : -1000;
      call->http_status = status;
    } else if (n == "content-type") {
      call->content_type = v;
    } else if (n == "grpc-status") {
      int status = 0;
      bool valid = !v.empty();
      for (char ch : v) {
        if (ch < '0' || ch > '9') valid = false;
        status = status * 10 + (ch - '0');
      }
      call->grpc_status = valid ? status : static_cast<int>(GrpcCode::kUnknown);
    } else if (n == "grpc-message") {
      call->grpc_message = PercentDecode(v);
    } else if (!call->headers_done) {
      call->headers.emplace_back(n, v);
    } else {
      call->trailers.emplace_back(n, v);
    }
    return 0;
  }

  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    auto* self = static_cast<GrpcClient*>(user);
    if (frame->hd.type == NGHTTP2_HEADERS) {
      if (GrpcClient::Call* call = CallOf(self, frame->hd.stream_id)) {
        self->OnHeadersDone(call, (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0);
      }
    }
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      // The server's side is over, so is the call, even while ours is open (a server
      // may answer before the request ends): end our side too, then report.
      if (GrpcClient::Call* call = CallOf(self, frame->hd.stream_id)) {
        if (!call->send_closed || call->send_offset < call->send.size()) {
          nghttp2_submit_rst_stream(self->ng_, NGHTTP2_FLAG_NONE, call->id, NGHTTP2_NO_ERROR);
        }
        self->Finish(call, StatusOf(*call, NGHTTP2_NO_ERROR));
      }
    }
    switch (frame->hd.type) {  // connection-level frames
      case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK) self->ping_outstanding_ = false;
        break;
      case NGHTTP2_GOAWAY:
        self->goaway_received_ = true;
        break;
      default:
        break;
    }
    return 0;
  }

  static int OnDataChunk(nghttp2_session*, uint8_t, int32_t stream, const uint8_t* data, size_t len,
                         void* user) {
    auto* self = static_cast<GrpcClient*>(user);
    if (GrpcClient::Call* call = CallOf(self, stream)) self->OnData(call, {data, len});
    return 0;
  }

  static int OnStreamClose(nghttp2_session*, int32_t stream, uint32_t error_code, void* user) {
    auto* self = static_cast<GrpcClient*>(user);
    if (GrpcClient::Call* call = CallOf(self, stream))
      self->Finish(call, StatusOf(*call, error_code));
    return 0;
  }

  // StatusOf is how the server ended `call`: its grpc-status, else its HTTP status,
  // else the reset's code.
  static GrpcStatus StatusOf(const GrpcClient::Call& call, uint32_t error_code) {
    GrpcStatus status;
    if (call.grpc_status) {
      status.code = static_cast<GrpcCode>(*call.grpc_status);
      if (*call.grpc_status < 0 || *call.grpc_status > 16) status.code = GrpcCode::kUnknown;
      status.message = call.grpc_message;
    } else if (call.http_status != 0 && call.http_status != 200) {
      status.code = HttpStatusToGrpc(call.http_status);
      status.message = "HTTP status " + std::to_string(call.http_status) + " without grpc-status";
    } else if (error_code != NGHTTP2_NO_ERROR) {
      status.code = ResetToGrpc(error_code);
      status.message =
          std::string("stream reset by the server: ") + nghttp2_http2_strerror(error_code);
    } else {
      status.code = GrpcCode::kInternal;
      status.message = "the server ended the call without grpc-status";
    }
    return status;
  }

  static ssize_t Read(nghttp2_session*, int32_t stream, uint8_t* buf, size_t length,
                      uint32_t* flags, nghttp2_data_source*, void* user) {
    auto* self = static_cast<GrpcClient*>(user);
    GrpcClient::Call* call = CallOf(self, stream);
    if (call == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    const size_t left = call->send.size() - call->send_offset;
    if (left == 0) {
      if (call->send_closed) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
      }
      call->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    const size_t n = std::min(left, length);
    std::memcpy(buf, call->send.data() + call->send_offset, n);
    call->send_offset += n;
    if (call->send_offset == call->send.size()) {
      call->send.clear();
      call->send_offset = 0;
      if (call->send_closed) *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return static_cast<ssize_t>(n);
  }
};

GrpcClient::GrpcClient(const GrpcClientOptions& options) : options_(options) {}

GrpcClient::~GrpcClient() {
  if (ng_ != nullptr) nghttp2_session_del(ng_);
}

std::unique_ptr<GrpcClient> GrpcClient::Create(const GrpcClientOptions& options) {
  std::unique_ptr<GrpcClient> c(new GrpcClient(options));
  if (!c->Init()) return nullptr;
  return c;
}

bool GrpcClient::Init() {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return false;
  nghttp2_session_callbacks_set_on_header_callback(cbs, GrpcCallbacks::OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, GrpcCallbacks::OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, GrpcCallbacks::OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, GrpcCallbacks::OnStreamClose);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_closed_streams(opt, 1);
  const int rv = nghttp2_session_client_new2(&ng_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) return false;
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options_.window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64u << 10},
  };
  if (nghttp2_submit_settings(ng_, NGHTTP2_FLAG_NONE, settings, std::size(settings)) != 0) {
    return false;
  }
  return nghttp2_session_set_local_window_size(ng_, NGHTTP2_FLAG_NONE, 0,
                                               static_cast<int32_t>(options_.window)) == 0;
}

GrpcClient::Call* GrpcClient::Find(int32_t id) const {
  auto it = calls_.find(id);
  return it == calls_.end() ? nullptr : it->second.get();
}

Status GrpcClient::Receive(std::span<const char> data) {
  if (failed_) return Error{Errc::kInvalidArgument};
  const ssize_t n =
      nghttp2_session_mem_recv(ng_, reinterpret_cast<const uint8_t*>(data.data()), data.size());
  if (n < 0) {
    Fail(std::string("HTTP/2 error from the server: ") + nghttp2_strerror(static_cast<int>(n)));
    return Error{Errc::kInvalidArgument};
  }
  return Status::Ok();
}

std::string_view GrpcClient::NextOutput() {
  output_.clear();
  for (;;) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(ng_, &data);
    if (n < 0) {
      Fail(std::string("HTTP/2 send error: ") + nghttp2_strerror(static_cast<int>(n)));
      break;
    }
    if (n == 0) break;
    output_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    if (output_.size() >= (256u << 10)) break;  // the caller sends this much first
  }
  return output_;
}

bool GrpcClient::alive() const {
  if (failed_) return false;
  if (goaway_received_ && calls_.empty()) return false;
  return nghttp2_session_want_read(ng_) != 0 || nghttp2_session_want_write(ng_) != 0;
}

bool GrpcClient::can_start() const { return !failed_ && !goaway_received_; }

Result<int32_t> GrpcClient::Start(std::string_view path, const Metadata& metadata,
                                  GrpcCallObserver* observer,
                                  std::optional<std::chrono::milliseconds> timeout) {
  if (!can_start()) return Error{Errc::kUnavailable};
  std::vector<std::pair<std::string, std::string>> h = {
      {":method", "POST"},
      {":scheme", "https"},
      {":path", std::string(path)},
      {":authority", options_.authority},
      {"content-type", "application/grpc"},
      {"te", "trailers"},
      {"user-agent", options_.user_agent},
  };
  if (timeout) h.emplace_back("grpc-timeout", FormatGrpcTimeout(*timeout));
  for (const auto& kv : metadata) h.push_back(kv);
  std::vector<nghttp2_nv> nva;
  nva.reserve(h.size());
  for (auto& [k, v] : h) {
    nva.push_back({reinterpret_cast<uint8_t*>(k.data()), reinterpret_cast<uint8_t*>(v.data()),
                   k.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
  }
  auto call = std::make_unique<Call>();
  call->observer = observer;
  nghttp2_data_provider provider{};
  provider.read_callback = GrpcCallbacks::Read;
  const int32_t id =
      nghttp2_submit_request(ng_, nullptr, nva.data(), nva.size(), &provider, nullptr);
  if (id < 0) return Error{Errc::kUnavailable};
  call->id = id;
  calls_.emplace(id, std::move(call));
  return id;
}

Status GrpcClient::Send(int32_t id, std::string_view message) {
  Call* call = Find(id);
  if (call == nullptr || call->send_closed) return Error{Errc::kClosed};
  const uint32_t len = static_cast<uint32_t>(message.size());
  const char prefix[5] = {0, static_cast<char>(len >> 24), static_cast<char>(len >> 16),
                          static_cast<char>(len >> 8), static_cast<char>(len)};
  call->send.append(prefix, sizeof(prefix));
  call->send.append(message);
  if (call->deferred) {
    call->deferred = false;
    nghttp2_session_resume_data(ng_, id);
  }
  return Status::Ok();
}

Status GrpcClient::CloseSend(int32_t id) {
  Call* call = Find(id);
  if (call == nullptr) return Error{Errc::kClosed};
  call->send_closed = true;
  if (call->deferred) {
    call->deferred = false;
    nghttp2_session_resume_data(ng_, id);
  }
  return Status::Ok();
}

void GrpcClient::Cancel(int32_t id, const GrpcStatus& status) {
  Call* call = Find(id);
  if (call == nullptr) return;
  nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  Finish(call, status);
}

void GrpcClient::CloseAll(const GrpcStatus& status) {
  while (!calls_.empty()) Finish(calls_.begin()->second.get(), status);
}

void GrpcClient::SendPing() {
  if (nghttp2_submit_ping(ng_, NGHTTP2_FLAG_NONE, nullptr) == 0) ping_outstanding_ = true;
}

void GrpcClient::Goaway() {
  nghttp2_submit_goaway(ng_, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
}

void GrpcClient::OnHeadersDone(Call* call, bool end_stream) {
  if (call->finished) return;
  if (!call->headers_done) {
    call->headers_done = true;
    const bool grpc_type = call->content_type.rfind("application/grpc", 0) == 0;
    if (call->http_status == 200 && !call->content_type.empty() && !grpc_type) {
      nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, call->id, NGHTTP2_CANCEL);
      return Finish(call,
                    {GrpcCode::kUnknown, "the server answered with content-type \"" +
                                             call->content_type + "\", not application/grpc"});
    }
    // A trailers-only answer (END_STREAM on the first HEADERS) has no initial metadata.
    if (!end_stream && call->http_status == 200) call->observer->OnHeaders(call->headers);
  }
}

void GrpcClient::OnData(Call* call, std::span<const uint8_t> data) {
  if (call->finished) return;
  call->recv.append(reinterpret_cast<const char*>(data.data()), data.size());
  size_t at = 0;
  while (call->recv.size() - at >= 5) {
    const auto* p = reinterpret_cast<const uint8_t*>(call->recv.data() + at);
    const uint32_t len =
        (uint32_t{p[1]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 8) | p[4];
    if (p[0] != 0) {
      nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, call->id, NGHTTP2_CANCEL);
      return Finish(call, {GrpcCode::kInternal,
                           "the server sent a compressed message, but no compression was asked"});
    }
    if (len > options_.max_message) {
      nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, call->id, NGHTTP2_CANCEL);
      return Finish(call, {GrpcCode::kResourceExhausted, "message of " + std::to_string(len) +
                                                             " bytes is over the limit of " +
                                                             std::to_string(options_.max_message)});
    }
    if (call->recv.size() - at - 5 < len) break;
    std::string message = call->recv.substr(at + 5, len);
    at += 5 + len;
    const int32_t id = call->id;
    call->observer->OnMessage(std::move(message));
    call = Find(id);  // the observer may have cancelled the call
    if (call == nullptr || call->finished) return;
  }
  call->recv.erase(0, at);
}

void GrpcClient::Finish(Call* call, GrpcStatus status) {
  if (call->finished) return;
  call->finished = true;
  GrpcCallObserver* observer = call->observer;
  Metadata trailers = std::move(call->trailers);
  const int32_t id = call->id;
  if (!call->recv.empty() && status.ok()) {
    status = {GrpcCode::kInternal, "the call ended inside a message"};
  }
  calls_.erase(id);  // before OnClose: the observer may start a new call in it
  observer->OnClose(status, trailers);
}

void GrpcClient::Fail(std::string why) {
  if (failed_) return;
  failed_ = true;
  failure_ = std::move(why);
}

}  // namespace zt::h2
