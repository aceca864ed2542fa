"""TCP client for tests: keeps one connection live and busy, and says when it ended.
Connects to HOST:PORT, prints {"connected": true, "local_port": p}, then sends CHUNK
bytes every INTERVAL seconds (never half-closes) while watching for the peer closing or
resetting the connection. When that happens (or after --max seconds) it prints
{"ended": wall-clock time (time.time()) of the first sign of the end, "how": "EOF" or an
errno name or "timeout", "sent": bytes sent, "received": bytes received}."""
import argparse
import errno
import json
import select
import socket
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--chunk", type=int, default=16384)
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--max", type=float, default=30.0)
    args = ap.parse_args()

    s = socket.create_connection((args.host, args.port), timeout=10)
    print(json.dumps({"connected": True, "local_port": s.getsockname()[1]}), flush=True)
    s.setblocking(False)
    data = b"h" * args.chunk
    sent = received = 0
    how = "timeout"
    deadline = time.monotonic() + args.max
    next_send = time.monotonic()
    while time.monotonic() < deadline:
        wait = max(0.0, min(next_send, deadline) - time.monotonic())
        readable, _, _ = select.select([s], [], [], wait)
        try:
            if readable:
                got = s.recv(65536)
                if not got:
                    how = "EOF"
                    break
                received += len(got)
            if time.monotonic() >= next_send:
                next_send += args.interval
                try:
                    sent += s.send(data)
                except BlockingIOError:
                    pass
        except OSError as e:
            how = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else str(e)
            break
    ended = time.time()
    s.close()
    print(json.dumps({"ended": ended, "how": how, "sent": sent, "received": received}),
          flush=True)


if __name__ == "__main__":
    main()
