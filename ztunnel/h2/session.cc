#include "ztunnel/h2/session.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace zt::h2 {
namespace {

// A stream that has this much queued asks to hear when it drops back below.
constexpr size_t kLowWater = 64 << 10;
// A DATA frame header is 9 bytes. Each stream's buffer keeps that much room before the
// unsent bytes, so a frame goes to the DataSink as one contiguous span without a copy.
constexpr size_t kFrameHeader = 9;
// The opaque data of the graceful GOAWAY's PING (the keepalive PING's is zeros).
constexpr uint8_t kDrainPing[8] = {'z', 't', '-', 'd', 'r', 'a', 'i', 'n'};

nghttp2_nv Header(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

Limits ServerLimits() { return Limits{}; }

Limits ClientLimits() {
  Limits l;
  l.max_concurrent_streams = 100;
  l.max_header_list = 16 << 10;
  return l;
}

struct Session::Stream {
  int32_t id = 0;
  StreamObserver* observer = nullptr;
  // Request (server) or response (client) headers as they arrive.
  std::string method;
  std::string authority;
  std::string baggage;
  std::string forwarded;
  std::string traceparent;
  int status = 0;
  size_t header_bytes = 0;
  // Outgoing bytes not yet sent are out[out_offset..]; out_offset >= kFrameHeader.
  std::string out = std::string(kFrameHeader, '\0');
  size_t out_offset = kFrameHeader;
  bool out_eof = false;
  bool deferred = false;
  bool wants_writable = false;
  bool reset_after_response = false;  // a refusal: RST_STREAM(NO_ERROR) once it is sent
  bool awaiting_answer = false;       // server: handed to OnConnect, not answered yet

  size_t buffered() const { return out.size() - out_offset; }
};

// Callbacks are nghttp2's hooks; user_data is the Session.
struct Callbacks {
  using Stream = Session::Stream;
  static Session* S(void* user_data) { return static_cast<Session*>(user_data); }

  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    Session* s = S(user_data);
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST &&
        s->handler_ != nullptr) {
      auto stream = std::make_unique<Stream>();
      stream->id = frame->hd.stream_id;
      s->streams_[stream->id] = std::move(stream);
    }
    return 0;
  }

  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t /*flags*/,
                      void* user_data) {
    Session* s = S(user_data);
    Stream* st = s->Find(frame->hd.stream_id);
    if (st == nullptr) return 0;
    // Count the *decoded* size (RFC 9113 §6.5.2: name + value + 32 per field).
    st->header_bytes += namelen + valuelen + 32;
    if (st->header_bytes > s->limits_.max_header_list) {
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets this stream only
    }
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":method") {
      st->method = v;
    } else if (n == ":authority") {
      st->authority = v;
    } else if (n == "baggage") {
      st->baggage = v;
    } else if (n == "forwarded") {
      st->forwarded = v;
    } else if (n == "traceparent") {
      st->traceparent = v;
    } else if (n == ":status") {
      st->status = 0;
      for (char c : v) st->status = st->status * 10 + (c - '0');
    }
    return 0;
  }

  static int OnFrameRecv(nghttp2_session* ng, const nghttp2_frame* frame, void* user_data) {
    Session* s = S(user_data);
    const bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (frame->hd.type == NGHTTP2_DATA) {
      if (frame->hd.length == 0 && !end_stream) {
        if (++s->empty_frames_ > s->limits_.max_empty_frames) {
          s->Fail("flood of empty DATA frames");
          nghttp2_session_terminate_session(ng, NGHTTP2_ENHANCE_YOUR_CALM);
          return 0;
        }
      } else {
        s->empty_frames_ = 0;
      }
    }
    if (frame->hd.type == NGHTTP2_WINDOW_UPDATE &&
        ++s->window_updates_in_ >
            s->limits_.window_update_base +
                uint64_t{s->limits_.window_update_per_data} * s->data_frames_out_) {
      s->Fail("flood of WINDOW_UPDATE frames");
      nghttp2_session_terminate_session(ng, NGHTTP2_ENHANCE_YOUR_CALM);
      return 0;
    }
    if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK)) {
      if (std::memcmp(frame->ping.opaque_data, kDrainPing, sizeof(kDrainPing)) == 0) {
        // Sent after the first GOAWAY: the peer has read that one, and whatever it
        // opened before is in.
        if (s->drain_ping_outstanding_) s->FinishDrain();
      } else {
        s->ping_outstanding_ = false;  // the keepalive's
      }
    }
    Stream* st = s->Find(frame->hd.stream_id);
    if (st == nullptr) return 0;
    if (frame->hd.type == NGHTTP2_RST_STREAM && st->awaiting_answer) {
      // Rapid reset: the peer makes us start work (authorize, dial) and walks away.
      s->pending_resets_.insert(st->id);
      if (s->pending_resets_.size() > s->limits_.max_pending_resets) {
        s->Fail("rapid reset: " + std::to_string(s->pending_resets_.size()) +
                " streams reset before they were answered");
        s->calm_ = true;
        return NGHTTP2_ERR_CALLBACK_FAILURE;  // stop reading this peer's frames now
      }
    }
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      s->OnRequest(st);
    } else if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
      if (st->observer != nullptr) st->observer->OnResponse(st->status);
      // A refused tunnel is over: close our side too instead of holding a stream.
      if (st->status != 200) nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, kCancel);
    }
    // The stream may have been answered and closed inside OnRequest: look it up again.
    st = s->Find(frame->hd.stream_id);
    if (st != nullptr && end_stream && st->observer != nullptr &&
        (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS)) {
      st->observer->OnEndStream();
    }
    return 0;
  }

  static int OnFrameSend(nghttp2_session* ng, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.type == NGHTTP2_DATA) ++S(user_data)->data_frames_out_;
    if (frame->hd.type == NGHTTP2_GOAWAY && S(user_data)->drain_notice_pending_ &&
        frame->goaway.last_stream_id == 0x7fffffff) {
      // The first GOAWAY is out: its PING follows it (PINGs jump the queue, so it is
      // only submitted now), and the ack proves the peer read the GOAWAY.
      S(user_data)->drain_notice_pending_ = false;
      if (nghttp2_submit_ping(ng, NGHTTP2_FLAG_NONE, kDrainPing) == 0) {
        S(user_data)->drain_ping_outstanding_ = true;
      } else {
        S(user_data)->FinishDrain();
      }
    }
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR) {
      // nghttp2 itself ended the connection (rapid reset, flood, protocol error): say so.
      S(user_data)->Fail(std::string("sent GOAWAY ") +
                         nghttp2_http2_strerror(frame->goaway.error_code));
    }
    Stream* st = S(user_data)->Find(frame->hd.stream_id);
    if (st != nullptr && st->reset_after_response && frame->hd.type == NGHTTP2_HEADERS) {
      st->reset_after_response = false;
      nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, kNoError);
    }
    return 0;
  }

  static int OnDataChunk(nghttp2_session* ng, uint8_t /*flags*/, int32_t stream_id,
                         const uint8_t* data, size_t len, void* user_data) {
    Session* s = S(user_data);
    Stream* st = s->Find(stream_id);
    if (st == nullptr || st->observer == nullptr) {
      // Nobody to deliver to (tunnel not open): drop, but keep the window moving.
      nghttp2_session_consume(ng, stream_id, len);
      return 0;
    }
    st->observer->OnData({reinterpret_cast<const char*>(data), len});
    return 0;
  }

  static int OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                           void* user_data) {
    Session* s = S(user_data);
    auto it = s->streams_.find(stream_id);
    if (it == s->streams_.end()) return 0;
    std::unique_ptr<Stream> st = std::move(it->second);
    s->streams_.erase(it);
    if (st->awaiting_answer && s->handler_ != nullptr) s->handler_->OnStreamReset(stream_id);
    if (st->observer != nullptr) st->observer->OnStreamClosed(error_code);
    return 0;
  }

  // DataLength sizes DATA frames so that header + payload fill whole TLS records
  // (16 KiB of plaintext each): a 16,384-byte payload plus its 9-byte header would
  // make every frame a full record and a 9-byte one. Up to 4 records per frame.
  static ssize_t DataLength(nghttp2_session*, uint8_t /*frame_type*/, int32_t /*stream_id*/,
                            int32_t session_window, int32_t stream_window,
                            uint32_t remote_max_frame_size, void* /*user_data*/) {
    constexpr size_t kRecord = 16384;
    constexpr size_t kHeader = 9;
    const size_t records = std::clamp<size_t>((remote_max_frame_size + kHeader) / kRecord, 1, 4);
    const size_t window = static_cast<size_t>(std::max(0, std::min(session_window, stream_window)));
    return static_cast<ssize_t>(std::max<size_t>(1, std::min(records * kRecord - kHeader, window)));
  }

  static ssize_t ReadData(nghttp2_session*, int32_t /*stream_id*/, uint8_t* buf, size_t length,
                          uint32_t* data_flags, nghttp2_data_source* source, void* user_data) {
    Session* s = S(user_data);
    auto* st = static_cast<Stream*>(source->ptr);
    const size_t n = std::min(length, st->buffered());
    if (n == 0 && !st->out_eof) {
      st->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    if (n == st->buffered() && st->out_eof) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    if (s->data_sink_ && n > 0) {
      *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;  // SendData takes the bytes in place
      return static_cast<ssize_t>(n);
    }
    std::memcpy(buf, st->out.data() + st->out_offset, n);
    Taken(s, st, n);
    return static_cast<ssize_t>(n);
  }

  // SendData hands one NO_COPY frame to the sink: header in the headroom before the
  // payload, so header and payload leave as one span (and fill whole TLS records).
  static int SendData(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                      nghttp2_data_source* source, void* user_data) {
    Session* s = S(user_data);
    auto* st = static_cast<Stream*>(source->ptr);
    if (frame->data.padlen != 0 || length > st->buffered()) return NGHTTP2_ERR_CALLBACK_FAILURE;
    char* start = st->out.data() + st->out_offset - kFrameHeader;
    std::memcpy(start, framehd, kFrameHeader);  // over bytes already sent
    if (!s->data_sink_({start, kFrameHeader + length})) return NGHTTP2_ERR_WOULDBLOCK;
    Taken(s, st, length);
    return 0;
  }

  // Taken drops `n` sent bytes from the front of the stream's buffer.
  static void Taken(Session* s, Stream* st, size_t n) {
    st->out_offset += n;
    if (st->buffered() == 0) {
      st->out.resize(kFrameHeader);
      st->out_offset = kFrameHeader;
    } else if (st->out_offset > (1 << 20)) {
      st->out.erase(0, st->out_offset - kFrameHeader);  // compact now and then, not per frame
      st->out_offset = kFrameHeader;
    }
    if (st->wants_writable && st->buffered() <= kLowWater) {
      st->wants_writable = false;
      s->writable_.push_back(st->id);
    }
  }
};

Session::Session(const Limits& limits, ServerHandler* handler)
    : limits_(limits), handler_(handler) {}

std::unique_ptr<Session> Session::Client(const Limits& limits) {
  std::unique_ptr<Session> s(new Session(limits, nullptr));
  if (!s->Init(false)) return nullptr;
  return s;
}

std::unique_ptr<Session> Session::Server(const Limits& limits, ServerHandler* handler) {
  std::unique_ptr<Session> s(new Session(limits, handler));
  if (!s->Init(true)) return nullptr;
  return s;
}

bool Session::Init(bool server) {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, Callbacks::OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, Callbacks::OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, Callbacks::OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, Callbacks::OnDataChunk);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, Callbacks::OnFrameSend);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, Callbacks::OnStreamClose);
  nghttp2_session_callbacks_set_data_source_read_length_callback(cbs, Callbacks::DataLength);
  nghttp2_session_callbacks_set_send_data_callback(cbs, Callbacks::SendData);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);  // Consume() drives the windows
  nghttp2_option_set_max_outbound_ack(opt, limits_.max_outbound_acks);
  nghttp2_option_set_max_continuations(opt, limits_.max_continuations);
  nghttp2_option_set_stream_reset_rate_limit(opt, limits_.reset_burst, limits_.reset_rate);
  nghttp2_option_set_no_closed_streams(opt, 1);
  nghttp2_option_set_max_send_header_block_length(opt, limits_.max_header_list);
  int rv = server ? nghttp2_session_server_new2(&ng_, cbs, this, opt)
                  : nghttp2_session_client_new2(&ng_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) return false;

  std::vector<nghttp2_settings_entry> settings = {
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, limits_.stream_window},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, limits_.max_frame_size},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits_.max_header_list},
  };
  if (server) {
    settings.push_back({NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits_.max_concurrent_streams});
  }
  rv = nghttp2_submit_settings(ng_, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
  if (rv == 0) {
    rv = nghttp2_session_set_local_window_size(ng_, NGHTTP2_FLAG_NONE, 0,
                                               static_cast<int32_t>(limits_.connection_window));
  }
  return rv == 0;
}

Session::~Session() {
  if (ng_ != nullptr) nghttp2_session_del(ng_);
}

Session::Stream* Session::Find(int32_t id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

void Session::Fail(std::string why) {
  if (!failed_) {
    failed_ = true;
    failure_ = std::move(why);
  }
}

void Session::OnRequest(Stream* st) {
  auto reject = [&](int status) { (void)Respond(st->id, status, nullptr); };
  if (st->method != "CONNECT") return reject(400);
  auto authority = IpPort::Parse(st->authority);
  if (!authority || authority->port == 0) return reject(400);
  ConnectRequest request{*authority, std::move(st->baggage), std::move(st->forwarded),
                         std::move(st->traceparent)};
  st->awaiting_answer = true;
  handler_->OnConnect(st->id, request);
}

Status Session::Receive(std::span<const char> data) {
  if (failed_ || closed_) return Error{Errc::kClosed};
  const ssize_t rv =
      nghttp2_session_mem_recv(ng_, reinterpret_cast<const uint8_t*>(data.data()), data.size());
  if (rv < 0) {
    Fail(nghttp2_strerror(static_cast<int>(rv)));
    // Tell the peer why, if anything can still be sent.
    const bool flood =
        calm_ || rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS;
    nghttp2_session_terminate_session(ng_, flood ? kEnhanceYourCalm : kProtocolError);
    return Error{Errc::kInvalidArgument};
  }
  if (failed_) return Error{Errc::kInvalidArgument};
  return Status::Ok();
}

std::string_view Session::NextOutput() {
  if (closed_) return {};
  const uint8_t* data = nullptr;
  const ssize_t n = nghttp2_session_mem_send(ng_, &data);
  if (n < 0) {
    Fail(nghttp2_strerror(static_cast<int>(n)));
    return {};
  }
  if (n == 0 && !writable_.empty()) {
    std::vector<int32_t> ready;
    ready.swap(writable_);
    for (int32_t id : ready) {
      if (Stream* st = Find(id); st != nullptr && st->observer != nullptr) {
        st->observer->OnWritable();
      }
    }
    return NextOutput();  // OnWritable may have queued more
  }
  return {reinterpret_cast<const char*>(data), static_cast<size_t>(n)};
}

bool Session::alive() const {
  return !failed_ && (nghttp2_session_want_read(ng_) || nghttp2_session_want_write(ng_));
}

Result<int32_t> Session::Connect(const ConnectRequest& request, StreamObserver* observer) {
  if (handler_ != nullptr || !alive()) return Error{Errc::kClosed};
  if (streams_.size() >= std::min<size_t>(limits_.max_concurrent_streams, peer_max_streams())) {
    return Error{Errc::kResourceExhausted};
  }
  auto st = std::make_unique<Stream>();
  st->observer = observer;
  const std::string authority = request.authority.ToString();
  std::vector<nghttp2_nv> nva = {Header(":method", "CONNECT"), Header(":authority", authority)};
  if (!request.baggage.empty()) nva.push_back(Header("baggage", request.baggage));
  if (!request.forwarded.empty()) nva.push_back(Header("forwarded", request.forwarded));
  if (!request.traceparent.empty()) nva.push_back(Header("traceparent", request.traceparent));
  nghttp2_data_provider provider{};
  provider.source.ptr = st.get();
  provider.read_callback = Callbacks::ReadData;
  const int32_t id =
      nghttp2_submit_request(ng_, nullptr, nva.data(), nva.size(), &provider, nullptr);
  if (id < 0) return Error{Errc::kResourceExhausted};
  st->id = id;
  streams_[id] = std::move(st);
  return id;
}

Status Session::Respond(int32_t stream, int status, StreamObserver* observer,
                        std::string_view baggage) {
  pending_resets_.erase(stream);  // the handler is done with it, reset or not
  Stream* st = Find(stream);
  if (st == nullptr) return Error{Errc::kNotFound};
  st->awaiting_answer = false;
  const std::string code = std::to_string(status);
  // nghttp2 copies the header values while submitting (no NGHTTP2_NV_FLAG_NO_COPY).
  nghttp2_nv nva[] = {Header(":status", code), Header("baggage", baggage)};
  const size_t nvlen = baggage.empty() ? 1 : 2;
  int rv;
  st->observer = observer;
  if (status == 200) {
    nghttp2_data_provider provider{};
    provider.source.ptr = st;
    provider.read_callback = Callbacks::ReadData;
    rv = nghttp2_submit_response(ng_, stream, nva, nvlen, &provider);
  } else {
    // The answer ends the stream; RST_STREAM(NO_ERROR) after it frees the slot at once
    // rather than waiting for the client to close its side.
    rv = nghttp2_submit_response(ng_, stream, nva, nvlen, nullptr);
    st->reset_after_response = true;
  }
  return rv == 0 ? Status::Ok() : Status(Error{Errc::kInvalidArgument});
}

Status Session::Write(int32_t stream, std::span<const char> data) {
  Stream* st = Find(stream);
  if (st == nullptr || st->out_eof) return Error{Errc::kClosed};
  st->out.append(data.data(), data.size());
  if (st->buffered() > kLowWater) st->wants_writable = true;
  if (st->deferred) {
    st->deferred = false;
    nghttp2_session_resume_data(ng_, stream);
  }
  return Status::Ok();
}

size_t Session::Buffered(int32_t stream) const {
  Stream* st = Find(stream);
  return st == nullptr ? 0 : st->buffered();
}

Status Session::EndStream(int32_t stream) {
  Stream* st = Find(stream);
  if (st == nullptr) return Error{Errc::kClosed};
  st->out_eof = true;
  if (st->deferred) {
    st->deferred = false;
    nghttp2_session_resume_data(ng_, stream);
  }
  return Status::Ok();
}

void Session::Reset(int32_t stream, uint32_t code) {
  nghttp2_submit_rst_stream(ng_, NGHTTP2_FLAG_NONE, stream, code);
}

void Session::Consume(int32_t stream, size_t n) { nghttp2_session_consume(ng_, stream, n); }

void Session::Goaway(uint32_t code) {
  const bool first = !draining_;
  draining_ = true;
  if (handler_ != nullptr && code == kNoError) {
    if (!first) return;  // the graceful sequence is under way
    if (nghttp2_submit_shutdown_notice(ng_) == 0) {
      drain_notice_pending_ = true;  // its PING goes once it is sent (OnFrameSend)
      return;
    }
  }
  drain_notice_pending_ = drain_ping_outstanding_ = false;
  nghttp2_submit_goaway(ng_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(ng_), code,
                        nullptr, 0);
}

void Session::FinishDrain() {
  if (!drain_notice_pending_ && !drain_ping_outstanding_) return;
  drain_notice_pending_ = drain_ping_outstanding_ = false;
  nghttp2_submit_goaway(ng_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(ng_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
}

void Session::CloseAll(uint32_t code) {
  closed_ = true;  // nghttp2 still knows these streams: never drive it again
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, st] : streams) {
    if (st->awaiting_answer && handler_ != nullptr) handler_->OnStreamReset(id);
    if (st->observer != nullptr) st->observer->OnStreamClosed(code);
  }
}

void Session::SendPing() {
  if (nghttp2_submit_ping(ng_, NGHTTP2_FLAG_NONE, nullptr) == 0) ping_outstanding_ = true;
}

bool Session::can_open() const {
  return !failed_ && !closed_ && handler_ == nullptr &&
         nghttp2_session_check_request_allowed(ng_) != 0;
}

uint32_t Session::peer_max_streams() const {
  return nghttp2_session_get_remote_settings(ng_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

}  // namespace zt::h2
