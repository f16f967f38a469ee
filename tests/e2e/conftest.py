"""Starting the real switchyard binary for the SDK tests."""
import base64
import contextlib
import json
import os
import secrets
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The servers adopt this as their first admin key; the SDK sends it.
API_KEY = "sy-" + secrets.token_hex(8) + "." + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


@contextlib.contextmanager
def running(*args, name="switchyard"):
    """`switchyard serve` on a free port with its own data folder; yields the
    base URL once every configured model is ready."""
    binary = os.environ["SWITCHYARD_BIN"]
    data = tempfile.mkdtemp(prefix="switchyard-e2e-")
    env = dict(os.environ, SWITCHYARD_STORAGE__DATA_DIR=data, SWITCHYARD_ADMIN_KEY=API_KEY)
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"{name}-e2e.log"), "w+")
    proc = subprocess.Popen(
        [binary, "serve", "--host", "127.0.0.1", "--port", "0", "--log-format", "json", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
    )
    try:
        line = proc.stdout.readline()
        if "listening on" not in line:
            log.seek(0)
            pytest.fail("server did not start: " + log.read())
        url = line.strip().rsplit(" ", 1)[-1]
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                # /ready covers the default model; wait for every model.
                root = json.load(urllib.request.urlopen(url + "/", timeout=2))
                if all(m["status"] == "ready" for m in root["models"]):
                    break
            except Exception:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("server never became ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def collect_stream(stream):
    """A streamed chat's text, its usage (with include_usage) and finish reason."""
    parts, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    return "".join(parts), usage, finish
