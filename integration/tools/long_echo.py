"""A long echo connection for hand-over tests: connects to HOST:PORT (an echo server),
sends a numbered 64-byte line every PERIOD seconds and checks each one comes back
intact and in order. When the file --stop-file appears it finishes cleanly: half-
closes, reads the rest of the echo and the server's FIN. If the connection ends
first (reset, FIN, timeout) it stops there. Prints one JSON line:
    {"ended": "finished" | "closed" | "<errno name>", "lines": n echoed intact,
     "intact": true if every byte that came back matched, "seconds": lifetime,
     "ended_at": time.time() when it ended}"""
import argparse
import errno
import json
import os
import socket
import time


def line(n: int) -> bytes:
    return f"{n:08d} ".encode() + bytes(ord("a") + (n + i) % 26 for i in range(54)) + b"\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--period", type=float, default=0.1)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--max", type=float, default=300.0, help="give up after this many seconds")
    args = p.parse_args()
    t0 = time.monotonic()
    sent, echoed, intact, ended = 0, 0, True, "closed"
    pending = b""
    try:
        with socket.create_connection((args.host, args.port), timeout=10) as s:
            s.settimeout(10)
            while time.monotonic() - t0 < args.max:
                if os.path.exists(args.stop_file):
                    s.shutdown(socket.SHUT_WR)
                    while True:
                        data = s.recv(65536)
                        if not data:
                            break
                        pending += data
                    ended = "finished"
                    break
                s.sendall(line(sent))
                sent += 1
                data = s.recv(65536)
                if not data:
                    break  # the far side ended it
                pending += data
                while len(pending) >= 64 and intact:
                    intact = pending[:64] == line(echoed)
                    pending = pending[64:]
                    echoed += 1
                time.sleep(args.period)
    except OSError as e:
        ended = errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__
    while len(pending) >= 64 and intact:
        intact = pending[:64] == line(echoed)
        pending = pending[64:]
        echoed += 1
    if ended == "finished" and (echoed != sent or pending):
        intact = False  # a clean finish must have every line back
    print(json.dumps({"ended": ended, "lines": echoed, "sent": sent, "intact": intact and not pending,
                      "seconds": round(time.monotonic() - t0, 3), "ended_at": time.time()}))


if __name__ == "__main__":
    main()
