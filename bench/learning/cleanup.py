#!/usr/bin/env python3
"""Deletes the JetStream streams (and key-value buckets) of the benchmark's NATS prefixes.

    python3 bench/learning/cleanup.py nats://127.0.0.1:4222 PREFIX...

Speaks the NATS protocol on a plain socket (no client library to install): lists the streams
with `$JS.API.STREAM.NAMES` and deletes each whose name starts with `PREFIX_` or
`KV_PREFIX_` with `$JS.API.STREAM.DELETE.<name>`.
"""
import json
import socket
import sys
from urllib.parse import urlparse


class Nats:
    def __init__(self, url):
        u = urlparse(url if "://" in url else "nats://" + url)
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222), timeout=10)
        self.file = self.sock.makefile("rb")
        self.file.readline()  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.cleanup 1\r\n')

    def request(self, subject, payload=b""):
        self.sock.sendall(b"PUB %s _INBOX.cleanup %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))
        while True:
            line = self.file.readline()
            if not line:
                raise RuntimeError("NATS closed the connection")
            if line.startswith(b"PING"):
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise RuntimeError(line.decode().strip())
            elif line.startswith(b"MSG"):
                size = int(line.split()[-1])
                return json.loads(self.file.read(size + 2)[:-2] or b"{}")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    nats = Nats(sys.argv[1])
    prefixes = sys.argv[2:]
    names, offset = [], 0
    while True:
        page = nats.request("$JS.API.STREAM.NAMES", json.dumps({"offset": offset}).encode())
        if "error" in page:
            sys.exit(f"listing streams: {page['error']}")
        names += page.get("streams") or []
        offset += page.get("limit", 0)
        if not page.get("streams") or offset >= page.get("total", 0):
            break
    doomed = [n for n in names if any(n.startswith(p + "_") or n.startswith(f"KV_{p}_") for p in prefixes)]
    for name in doomed:
        reply = nats.request(f"$JS.API.STREAM.DELETE.{name}")
        if not reply.get("success"):
            print(f"could not delete stream {name}: {reply.get('error')}", file=sys.stderr)
    print(f"deleted {len(doomed)} streams of prefixes {', '.join(prefixes)}")


if __name__ == "__main__":
    main()
