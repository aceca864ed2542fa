"""TCP server for tests: for each connection, reads to EOF, answers with the sha256
hex digest and byte count of what it read, then closes. Serves until killed.
With --log FILE it appends one JSON line per finished connection (peer, count, sha256)."""
import argparse
import hashlib
import json
import socket
import threading


LOG_LOCK = threading.Lock()


def serve(conn: socket.socket, peer, log: str) -> None:
    h = hashlib.sha256()
    n = 0
    error = ""
    try:
        while True:
            data = conn.recv(1 << 20)
            if not data:
                break
            h.update(data)
            n += len(data)
        conn.sendall(f"{h.hexdigest()} {n}\n".encode())
    except OSError as e:
        error = str(e)
    finally:
        conn.close()
    if log:
        entry = {"peer": f"{peer[0]}:{peer[1]}", "count": n, "sha256": h.hexdigest(),
                 "error": error}
        with LOG_LOCK, open(log, "a") as f:
            f.write(json.dumps(entry) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--log", default="")
    args = ap.parse_args()
    host, port = args.host, args.port
    srv = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(128)
    while True:
        conn, peer = srv.accept()
        threading.Thread(target=serve, args=(conn, peer, args.log), daemon=True).start()


if __name__ == "__main__":
    main()
