"""TCP client for hand-over tests: opens a new connection to HOST:PORT every INTERVAL
seconds (each on its own thread, so a slow one never delays the next), sends a few
hundred pseudo-random bytes, half-closes and checks the answer: the same bytes back
(--reply echo, e.g. `nc -e cat`) or the sink's "sha256 count" line (--reply digest,
tools/sink.py). Runs until the file --stop-file exists (or --max seconds), waits for
the connections in flight, then prints one JSON line:
    {"ok": n, "failed": n, "errors": {"ECONNREFUSED": n, "bad answer": n, ...},
     "started_at": wall-clock start (Unix seconds),
     "first_failures": [[seconds since start when it began, when it failed, what], ...]}"""
import argparse
import errno
import hashlib
import json
import os
import socket
import threading
import time


def one(host: str, port: int, reply: str, seed: int) -> str:
    """One exchange; "" when it went right, else what went wrong."""
    payload = hashlib.sha256(str(seed).encode()).digest() * 16  # 512 bytes
    try:
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            answer = b""
            while True:
                data = s.recv(65536)
                if not data:
                    break
                answer += data
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__
    if reply == "echo":
        return "" if answer == payload else f"bad answer ({len(answer)} bytes)"
    want = f"{hashlib.sha256(payload).hexdigest()} {len(payload)}"
    return "" if answer.decode(errors="replace").strip() == want else "bad answer"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--interval", type=float, default=0.01)
    ap.add_argument("--reply", choices=("echo", "digest"), default="echo")
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--max", type=float, default=300.0)
    args = ap.parse_args()

    lock = threading.Lock()
    ok = 0
    errors: dict[str, int] = {}
    first: list = []
    start = time.monotonic()

    started_at = time.time()

    def run(seed: int) -> None:
        nonlocal ok
        began = time.monotonic() - start
        what = one(args.host, args.port, args.reply, seed)
        with lock:
            if not what:
                ok += 1
                return
            errors[what] = errors.get(what, 0) + 1
            if len(first) < 10:
                first.append([round(began, 3), round(time.monotonic() - start, 3), what])

    threads = []
    seed = 0
    next_at = start
    while not os.path.exists(args.stop_file) and time.monotonic() - start < args.max:
        t = threading.Thread(target=run, args=(seed,), daemon=True)
        t.start()
        threads.append(t)
        seed += 1
        next_at += args.interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    for t in threads:
        t.join(timeout=30)
    print(json.dumps({"ok": ok, "failed": sum(errors.values()), "errors": errors,
                      "started_at": started_at, "first_failures": first}), flush=True)


if __name__ == "__main__":
    main()
