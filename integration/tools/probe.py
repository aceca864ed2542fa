"""TCP probe for tests: connects to HOST:PORT, sends N bytes, half-closes and reads
whatever comes back until EOF, a reset or the timeout. Prints one JSON line:
{"connected": bool, "sent": n, "reply": text, "reply_bytes": n, "error": errno name or ""}.
It never raises: a refused, reset or silent connection is a result, not a crash."""
import argparse
import errno
import json
import socket


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--bytes", type=int, default=1024)
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args()

    out = {"connected": False, "sent": 0, "reply": "", "reply_bytes": 0, "error": ""}
    reply = b""
    try:
        s = socket.create_connection((args.host, args.port), timeout=args.timeout)
        out["connected"] = True
        data = b"x" * args.bytes
        s.sendall(data)
        out["sent"] = len(data)
        s.shutdown(socket.SHUT_WR)
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        s.close()
    except socket.timeout:
        out["error"] = "ETIMEDOUT"
    except OSError as e:
        out["error"] = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else str(e)
    out["reply"] = reply[:200].decode(errors="replace")
    out["reply_bytes"] = len(reply)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
