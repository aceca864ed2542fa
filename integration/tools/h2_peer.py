"""An independent HBONE peer for interop tests: Python's ssl (OpenSSL) and the `h2`
library, nothing of ours.

client: connect with mutual TLS 1.3 + ALPN h2, CONNECT to --authority, send --bytes of
        pseudo-random data while reading the echo back; print JSON with both sha256s.
rapid-reset: CONNECT + RST_STREAM --streams times (CVE-2023-44487); print how many
        went out before the server hung up, and its GOAWAY code.
server: accept one mutual-TLS connection, answer every CONNECT with 200 and echo each
        stream's bytes back, ending the stream after the client ends its side.
        Prints "listening PORT" first.
"""
import argparse
import hashlib
import json
import random
import select
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events


def tls_context(args, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(args.cert, args.key)
    ctx.load_verify_locations(args.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    if not server:
        ctx.check_hostname = False  # identities are SPIFFE URIs, not DNS names
    if not getattr(args, "no_alpn", False):
        ctx.set_alpn_protocols(["h2"])
    return ctx


def flush(sock, conn):
    """Blocking send of everything h2 has queued."""
    data = conn.data_to_send()
    if data:
        sock.sendall(data)


class Writer:
    """Non-blocking TLS writer. OpenSSL requires a write that would block to be
    retried with the very same bytes, so one chunk stays in flight until it is taken."""

    def __init__(self, sock):
        self.sock = sock
        self.queued = b""
        self.inflight = b""

    def push(self, data: bytes) -> None:
        self.queued += data

    def flush(self) -> None:
        while True:
            if not self.inflight:
                if not self.queued:
                    return
                self.inflight, self.queued = self.queued[:65536], self.queued[65536:]
            try:
                n = self.sock.send(self.inflight)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                return
            self.inflight = self.inflight[n:]


def run_client(args) -> int:
    host, port = args.connect.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=30)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as every HTTP/2 stack does
    sock = tls_context(args, False).wrap_socket(raw)
    if not args.no_alpn:
        assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
    # h2 4.1 predates RFC 9113 CONNECT support (it insists on :path): skip its outbound
    # header checks; the CONNECT we send is what RFC 9113 §8.5 specifies.
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=False))
    conn.initiate_connection()
    conn.increment_flow_control_window(16 << 20)
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [(":method", "CONNECT"), (":authority", args.authority)])
    flush(sock, conn)

    rng = random.Random(42)
    block = rng.randbytes(1 << 16)
    sent = 0
    sent_hash, recv_hash = hashlib.sha256(), hashlib.sha256()
    received = 0
    status = None
    response_headers = {}
    ended_local = ended_remote = False
    sock.setblocking(False)
    writer = Writer(sock)
    while not ended_remote:
        if status == 200 and not ended_local:
            window = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
            while window > 0 and sent < args.bytes:
                n = min(window, args.bytes - sent, len(block))
                chunk = block[:n]
                block = block[7:] + block[:7]
                conn.send_data(stream, chunk)
                sent_hash.update(chunk)
                sent += n
                window = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
            if sent >= args.bytes:
                conn.end_stream(stream)
                ended_local = True
        writer.push(conn.data_to_send())
        writer.flush()
        wants_write = [sock] if writer.inflight or writer.queued else []
        if not sock.pending():  # decrypted bytes already buffered need no wait
            select.select([sock], wants_write, [], 1.0)
        try:
            data = sock.recv(1 << 20)
        except (ssl.SSLWantReadError, BlockingIOError):
            continue
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                response_headers = {k.decode(): v.decode() for k, v in event.headers}
                status = int(dict(event.headers)[b":status"])
                if status != 200:
                    ended_remote = True
            elif isinstance(event, h2.events.DataReceived):
                recv_hash.update(event.data)
                received += len(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                ended_remote = True
            elif isinstance(event, h2.events.StreamReset):
                ended_remote = True
    print(json.dumps({"status": status, "headers": response_headers, "sent": sent,
                      "received": received,
                      "sent_sha256": sent_hash.hexdigest(),
                      "received_sha256": recv_hash.hexdigest()}), flush=True)
    return 0


def run_rapid_reset(args) -> int:
    """CVE-2023-44487 as an attacker does it: CONNECT then RST_STREAM at once, --streams
    times, in batches; stops when the server hangs up. Prints how many streams went out
    and the GOAWAY's error code, if one came."""
    host, port = args.connect.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=30)
    sock = tls_context(args, False).wrap_socket(raw)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    sent, goaway, closed = 0, None, False
    sock.settimeout(0.05)
    while sent < args.streams and not closed and goaway is None:
        for _ in range(min(100, args.streams - sent)):
            stream = conn.get_next_available_stream_id()
            conn.send_headers(stream, [(":method", "CONNECT"), (":authority", args.authority)])
            conn.reset_stream(stream, error_code=8)  # CANCEL
            sent += 1
        try:
            sock.sendall(conn.data_to_send())
        except OSError:
            closed = True
            break
        try:
            data = sock.recv(1 << 16)
            if not data:
                closed = True
            else:
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ConnectionTerminated):
                        goaway = event.error_code
        except (socket.timeout, ssl.SSLWantReadError):
            pass
        except OSError:
            closed = True
    # Read until the server closes: the GOAWAY may still be on its way.
    sock.settimeout(5)
    try:
        while goaway is None:
            data = sock.recv(1 << 16)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ConnectionTerminated):
                    goaway = event.error_code
    except (OSError, h2.exceptions.ProtocolError):
        pass
    print(json.dumps({"sent": sent, "goaway": None if goaway is None else int(goaway)}),
          flush=True)
    return 0


def run_server(args) -> int:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    print(f"listening {listener.getsockname()[1]}", flush=True)
    raw, _ = listener.accept()
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as every HTTP/2 stack does
    sock = tls_context(args, True).wrap_socket(raw, server_side=True)
    # As for the client: h2 4.1 would reject a CONNECT without :path.
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, validate_inbound_headers=False))
    conn.initiate_connection()
    conn.increment_flow_control_window(16 << 20)
    flush(sock, conn)
    pending = {}   # stream -> bytes waiting to be echoed
    ended = set()  # streams whose client side ended
    while True:
        # ssl returns one TLS record per recv: drain what is already there, then
        # process it in one go (one h2 pass and one flush per batch, not per record).
        sock.setblocking(True)
        data = sock.recv(1 << 20)
        if not data:
            return 0
        sock.setblocking(False)
        try:
            while len(data) < (4 << 20):
                more = sock.recv(1 << 20)
                if not more:
                    break
                data += more
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
        sock.setblocking(True)
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                headers = dict(event.headers)
                ok = headers.get(b":method") == b"CONNECT"
                conn.send_headers(event.stream_id, [(":status", "200" if ok else "400")],
                                  end_stream=not ok)
                pending[event.stream_id] = b""
            elif isinstance(event, h2.events.DataReceived):
                pending[event.stream_id] = pending.get(event.stream_id, b"") + event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                ended.add(event.stream_id)
        for stream in list(pending):
            buf = pending[stream]
            while buf:
                window = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                conn.send_data(stream, buf[:window])
                buf = buf[window:]
            pending[stream] = buf
            if not buf and stream in ended:
                conn.end_stream(stream)
                del pending[stream]
        flush(sock, conn)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["client", "server", "rapid-reset"])
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--connect", help="client: host:port of the HBONE server")
    ap.add_argument("--authority", help="client: the CONNECT target ip:port")
    ap.add_argument("--bytes", type=int, default=1 << 20)
    ap.add_argument("--streams", type=int, default=10000, help="rapid-reset: how many")
    ap.add_argument("--no-alpn", action="store_true", help="client: offer no ALPN at all")
    args = ap.parse_args()
    if args.mode == "rapid-reset":
        return run_rapid_reset(args)
    return run_client(args) if args.mode == "client" else run_server(args)


if __name__ == "__main__":
    sys.exit(main())
