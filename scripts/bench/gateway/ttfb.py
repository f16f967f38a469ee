#!/usr/bin/env python3
"""Time to first chunk of a streaming chat completion, at concurrency 1.

One keep-alive connection (http.client, stdlib only). Each request is timed
from just before it is sent until the first `data:` line of the SSE reply has
been read; the rest of the stream is then drained and its `data:` events
counted. Prints one line:
  RESULT requests=N ttfc_p50_us=.. ttfc_p99_us=.. total_p50_us=.. events=.. connects=.. errors=..
(connects=1 means the one keep-alive connection served every request).
The bearer key comes from $GATEWAY_BENCH_KEY.
  ttfb.py URL MODEL [REQUESTS]
"""
import http.client
import json
import os
import socket
import sys
import time
import urllib.parse


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else 0


def main():
    url = urllib.parse.urlsplit(sys.argv[1])
    model = sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    body = json.dumps({
        "model": model, "stream": True, "stream_options": {"include_usage": True},
        "max_tokens": 20, "messages": [{"role": "user", "content": "Say something."}],
    }).encode()
    key = os.environ.get("GATEWAY_BENCH_KEY", "sk-dummy")
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + key,
               "Accept": "text/event-stream"}
    conn = None
    ttfc, total, events, errors, connects = [], [], set(), 0, 0
    for _ in range(n):
        try:
            if conn is None:
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
                conn.connect()
                connects += 1
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t0 = time.perf_counter()
            conn.request("POST", url.path, body, headers)
            resp = conn.getresponse()
            if resp.status != 200:
                resp.read()
                raise RuntimeError("status %d" % resp.status)
            first = None
            while True:
                line = resp.readline()
                if not line:
                    raise RuntimeError("stream ended before any data: line")
                if line.startswith(b"data:"):
                    first = time.perf_counter()
                    break
            rest = resp.read()  # drain to the end of the reply, keep the connection
            t1 = time.perf_counter()
            lines = [l for l in rest.split(b"\n") if l.startswith(b"data:")]
            if not lines or lines[-1].strip() != b"data: [DONE]":
                raise RuntimeError("stream did not end with data: [DONE]")
            events.add(1 + len(lines))
            ttfc.append((first - t0) * 1e6)
            total.append((t1 - t0) * 1e6)
            if resp.will_close:
                conn.close()
                conn = None
        except Exception as e:  # count it, reconnect, go on
            errors += 1
            if errors <= 3:
                print("ttfb.py: request failed: %s" % e, file=sys.stderr)
            if conn is not None:
                conn.close()
            conn = None
    print("RESULT requests=%d ttfc_p50_us=%d ttfc_p99_us=%d total_p50_us=%d events=%s connects=%d errors=%d" % (
        len(ttfc), pct(ttfc, 50), pct(ttfc, 99), pct(total, 50),
        "/".join(str(e) for e in sorted(events)) or "0", connects, errors))


if __name__ == "__main__":
    main()
