"""Many TCP connections at once, for overload tests: opens N connections to HOST:PORT
(non-blocking connects, all in flight together), optionally writes a few bytes on each,
then holds them open until stdin reaches EOF (or --hold seconds pass), and closes them.

Prints one JSON line when every connect has settled (connected, refused, reset, pending
after --connect-wait seconds) and one more when they have been closed:
    {"phase": "held", "connected": n, "failed": n, "pending": n, "errors": {...}}
    {"phase": "closed", "peer_closed": n}
`peer_closed` counts connections the other side had closed or reset while they were held.
With --dribble S each connected socket gets one byte of --send every S seconds instead
of the whole payload at once (slowloris)."""
import argparse
import errno
import json
import resource
import select
import socket
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("--send", default="", help="bytes to write on each, as hex")
    ap.add_argument("--dribble", type=float, default=0.0)
    ap.add_argument("--hold", type=float, default=600.0)
    ap.add_argument("--connect-wait", type=float, default=5.0)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    payload = bytes.fromhex(args.send)
    socks: list[socket.socket] = []
    for _ in range(args.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((args.host, args.port))
        socks.append(s)

    # Let every connect settle.
    state = {s.fileno(): "pending" for s in socks}
    errors: dict[str, int] = {}
    deadline = time.monotonic() + args.connect_wait
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLOUT)
    waiting = len(socks)
    while waiting and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            poller.unregister(fd)
            waiting -= 1
            state[fd] = "settled"
    connected = failed = 0
    live = []
    for s in socks:
        if state[s.fileno()] == "pending":
            continue
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            connected += 1
            live.append(s)
        else:
            failed += 1
            name = errno.errorcode.get(err, str(err))
            errors[name] = errors.get(name, 0) + 1
    pending = sum(1 for v in state.values() if v == "pending")

    if payload and not args.dribble:
        for s in live:
            try:
                s.send(payload)
            except OSError:
                pass
    print(json.dumps({"phase": "held", "connected": connected, "failed": failed,
                      "pending": pending, "errors": errors}), flush=True)

    # Hold until stdin closes (the test says so) or --hold passes; dribble meanwhile.
    end = time.monotonic() + args.hold
    offset = 0
    next_drip = time.monotonic()
    while time.monotonic() < end:
        timeout = max(0.0, min(end, next_drip if args.dribble else end) - time.monotonic())
        r, _, _ = select.select([sys.stdin], [], [], min(timeout, 0.5))
        if r and not sys.stdin.buffer.read1(4096):
            break
        if args.dribble and payload and time.monotonic() >= next_drip:
            byte = payload[offset % len(payload):offset % len(payload) + 1]
            offset += 1
            for s in live:
                try:
                    s.send(byte)
                except OSError:
                    pass
            next_drip = time.monotonic() + args.dribble

    peer_closed = 0
    for s in live:
        try:
            if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                peer_closed += 1
        except BlockingIOError:
            pass
        except OSError:
            peer_closed += 1
    for s in socks:
        s.close()
    print(json.dumps({"phase": "closed", "peer_closed": peer_closed}), flush=True)


if __name__ == "__main__":
    main()
