"""TCP server for tests: for each connection, reads to EOF, answers with the sha256
hex digest and byte count of what it read, then closes. Serves until killed."""
import hashlib
import socket
import sys
import threading


def serve(conn: socket.socket) -> None:
    h = hashlib.sha256()
    n = 0
    while True:
        data = conn.recv(1 << 20)
        if not data:
            break
        h.update(data)
        n += len(data)
    conn.sendall(f"{h.hexdigest()} {n}\n".encode())
    conn.close()


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    srv = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(128)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
