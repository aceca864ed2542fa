"""Hostile clients for the node process's HTTP endpoints (admin 15000, metrics 15020,
readiness 15021), run inside the node's netns by test_admin_overload.py. Prints one
JSON line with what it saw.

  slowloris --loris PORT:N ... --probe PORT --probes K --interval S
      N connections to each PORT send a partial request and then one byte a second
      (reopened when the server closes them); meanwhile K readiness probes, each timed
      from connect to the last byte of the answer.
  flood --port P --count N --path /metrics [--connect-first]
      N scrapes at once, each sending its request as soon as it is connected (or, with
      --connect-first, all N connected before any request is sent); every answer is read
      by its Content-Length and classified (200 complete, 503, or anything else).
"""
import argparse
import asyncio
import json
import resource
import socket
import threading
import time

HOST = "127.0.0.1"


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def read_response(sock: socket.socket) -> tuple[int, bytes, bool]:
    """(status, body, complete) of one response read by its Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, data, False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body, len(body) == length


class Loris:
    """Connections that never finish their headers, kept up until stopped."""

    def __init__(self, port: int, count: int):
        self.port = port
        self.socks: list[socket.socket | None] = [None] * count
        self.opened = 0
        self.closed_by_server = 0
        self.refused_503 = 0

    def _open(self, i: int) -> None:
        try:
            s = socket.create_connection((HOST, self.port), timeout=2)
            s.setblocking(False)
            s.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            self.socks[i] = s
            self.opened += 1
        except OSError:
            self.socks[i] = None

    def open_all(self) -> None:
        for i in range(len(self.socks)):
            self._open(i)

    def dribble(self) -> None:
        """One byte on every connection; reopen the ones the server closed."""
        for i, s in enumerate(self.socks):
            if s is not None:
                try:
                    got = s.recv(4096)
                    # An answer (503 past the budget) or EOF: the server is done with it.
                    if got.startswith(b"HTTP/1.1 503"):
                        self.refused_503 += 1
                    self.closed_by_server += 1
                    s.close()
                    s = None
                except BlockingIOError:
                    try:
                        s.send(b"a")
                    except OSError:
                        self.closed_by_server += 1
                        s.close()
                        s = None
                except OSError:
                    self.closed_by_server += 1
                    s.close()
                    s = None
                self.socks[i] = s
            if self.socks[i] is None:
                self._open(i)

    def close(self) -> None:
        for s in self.socks:
            if s is not None:
                s.close()


def slowloris(args) -> dict:
    raise_fd_limit()
    loris = []
    for spec in args.loris:
        port, count = spec.split(":")
        loris.append(Loris(int(port), int(count)))
    for l in loris:
        l.open_all()
    stop = threading.Event()

    def dribbler():
        while not stop.wait(1.0):
            for l in loris:
                l.dribble()

    t = threading.Thread(target=dribbler)
    t.start()
    time.sleep(0.5)  # every slow connection is in
    probes = []
    try:
        for _ in range(args.probes):
            start = time.perf_counter()
            try:
                s = socket.create_connection((HOST, args.probe), timeout=5)
                s.sendall(b"GET /healthz/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                status, body, complete = read_response(s)
                s.close()
                probes.append({"status": status, "complete": complete,
                               "body": body.decode(errors="replace"),
                               "latency": time.perf_counter() - start})
            except OSError as e:
                probes.append({"status": 0, "complete": False, "body": str(e),
                               "latency": time.perf_counter() - start})
            time.sleep(args.interval)
    finally:
        stop.set()
        t.join()
        for l in loris:
            l.close()
    return {"probes": probes,
            "loris": [{"port": l.port, "opened": l.opened, "closed_by_server": l.closed_by_server,
                       "refused_503": l.refused_503} for l in loris]}


async def flood(args) -> dict:
    raise_fd_limit()
    request = (f"GET {args.path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").encode()

    async def connect():
        try:
            return await asyncio.wait_for(asyncio.open_connection(HOST, args.port), 30)
        except (OSError, asyncio.TimeoutError) as e:
            return e

    async def exchange(conn):
        if isinstance(conn, BaseException):
            return ("connect_failed", repr(conn))
        reader, writer = conn
        try:
            writer.write(request)
            try:
                await writer.drain()
            except OSError:
                pass  # a 503 may already be in; read it
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await asyncio.wait_for(reader.readexactly(length), 30)
            if status == 200 and body.startswith(b"# HELP"):
                return ("ok", "")
            if status == 503:
                return ("busy", "")
            return ("other", f"status {status}")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                asyncio.TimeoutError, ValueError, IndexError) as e:
            return ("dropped", repr(e))
        finally:
            writer.close()

    async def scrape():
        return await exchange(await connect())

    start = time.perf_counter()
    if args.connect_first:
        conns = await asyncio.gather(*[connect() for _ in range(args.count)])
        connected = time.perf_counter() - start
        results = await asyncio.gather(*[exchange(c) for c in conns])
    else:
        results = await asyncio.gather(*[scrape() for _ in range(args.count)])
        connected = 0.0
    out = {"ok": 0, "busy": 0, "other": 0, "dropped": 0, "connect_failed": 0, "errors": [],
           "connect_seconds": connected, "seconds": time.perf_counter() - start}
    for kind, detail in results:
        out[kind] += 1
        if detail and len(out["errors"]) < 10:
            out["errors"].append(detail)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("slowloris")
    s.add_argument("--loris", action="append", default=[], help="PORT:COUNT")
    s.add_argument("--probe", type=int, required=True)
    s.add_argument("--probes", type=int, default=40)
    s.add_argument("--interval", type=float, default=0.15)
    f = sub.add_parser("flood")
    f.add_argument("--port", type=int, required=True)
    f.add_argument("--count", type=int, default=1000)
    f.add_argument("--path", default="/metrics")
    f.add_argument("--connect-first", action="store_true")
    args = ap.parse_args()
    if args.cmd == "slowloris":
        print(json.dumps(slowloris(args)))
    else:
        print(json.dumps(asyncio.run(flood(args))))


if __name__ == "__main__":
    main()
