"""Idle-connection load for the memory benchmark.

server HOST PORT: accept connections; echo the first byte of each, then hold it open.
client HOST PORT N: open N connections (in waves), send one byte on each and wait for
its echo (proof that each connection is relayed end to end), print "ready N", then
hold them until stdin closes."""
import resource
import selectors
import socket
import sys


def raise_fd_limit(n: int) -> None:
    """Lifts the soft limit towards n, never past the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(n, soft), hard), hard))


def server(host: str, port: int) -> None:
    raise_fd_limit(65536)
    sel = selectors.DefaultSelector()
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((host, port))
    lst.listen(4096)
    lst.setblocking(False)
    sel.register(lst, selectors.EVENT_READ, None)
    held = []
    while True:
        for key, _ in sel.select():
            if key.data is None:
                while True:
                    try:
                        conn, _ = lst.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, "conn")
            else:
                conn = key.fileobj
                try:
                    data = conn.recv(1)
                except (BlockingIOError, ConnectionError):
                    data = b""
                sel.unregister(conn)
                if data:
                    conn.send(data)
                    held.append(conn)
                else:
                    conn.close()


def client(host: str, port: int, n: int) -> None:
    raise_fd_limit(n + 1024)
    conns = []
    wave = 500
    while len(conns) < n:
        batch = []
        for _ in range(min(wave, n - len(conns))):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((host, port))
            batch.append(s)
        sel = selectors.DefaultSelector()
        for s in batch:
            sel.register(s, selectors.EVENT_WRITE)
        pending = len(batch)
        while pending:
            for key, _ in sel.select(timeout=30):
                s = key.fileobj
                sel.unregister(s)
                pending -= 1
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise SystemExit(f"connect failed: {err}")
                s.send(b"x")
        for s in batch:
            s.setblocking(True)
            s.settimeout(30)
            if s.recv(1) != b"x":
                raise SystemExit("connection closed before its echo")
        conns.extend(batch)
    print(f"ready {len(conns)}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "server":
        server(host, port)
    else:
        client(host, port, int(sys.argv[4]))
