"""TCP client for tests: sends N bytes of pseudo-random data to HOST:PORT, half-closes,
reads the sink's "digest count" answer and prints JSON with both sides' view.
With --pause-after B --pause-file F it stops after B bytes until F exists.
With --pattern TEXT the data is TEXT repeated instead of pseudo-random bytes (a known
plaintext marker to look for on the wire)."""
import argparse
import hashlib
import json
import os
import random
import socket
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("nbytes", type=int)
    ap.add_argument("--pause-after", type=int, default=-1)
    ap.add_argument("--pause-file", default="")
    ap.add_argument("--pattern", default="")
    args = ap.parse_args()

    rng = random.Random(1234)
    block = rng.randbytes(1 << 20)
    if args.pattern:
        unit = args.pattern.encode()
        block = (unit * ((1 << 20) // len(unit) + 1))[: 1 << 20]
    s = socket.create_connection((args.host, args.port), timeout=60)
    local_port = s.getsockname()[1]
    h = hashlib.sha256()
    sent = 0
    paused = False
    while sent < args.nbytes:
        if not paused and 0 <= args.pause_after <= sent:
            paused = True
            print(json.dumps({"paused_at": sent}), flush=True)
            while not os.path.exists(args.pause_file):
                time.sleep(0.02)
        chunk = block[: min(len(block), args.nbytes - sent)]
        # Rotate the block so the stream is not periodic.
        block = block[7:] + block[:7]
        s.sendall(chunk)
        h.update(chunk)
        sent += len(chunk)
    s.shutdown(socket.SHUT_WR)
    answer = b""
    while True:
        data = s.recv(4096)
        if not data:
            break
        answer += data
    digest, count = answer.decode().split()
    print(json.dumps({"local_port": local_port, "sent": sent, "sha256": h.hexdigest(),
                      "server_sha256": digest, "server_count": int(count)}), flush=True)


if __name__ == "__main__":
    main()
