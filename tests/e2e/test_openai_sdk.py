"""The official `openai` Python SDK against the real switchyard binary.

Run by scripts/test.sh with SWITCHYARD_BIN pointing at the built binary.
"""
import os
import subprocess
import time
import urllib.request

import openai
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def base_url():
    binary = os.environ["SWITCHYARD_BIN"]
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), "switchyard-e2e.log"), "w+")
    proc = subprocess.Popen(
        [binary, "serve", "--host", "127.0.0.1", "--port", "0", "--log-format", "json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
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
                if urllib.request.urlopen(url + "/ready", timeout=2).status == 200:
                    break
            except Exception:
                time.sleep(0.2)
        else:
            pytest.fail("server never became ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids
    assert client.models.retrieve(MODEL).id == MODEL


def test_chat_plain_and_streaming_agree(client):
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    plain = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=30)
    text = plain.choices[0].message.content
    assert text
    assert plain.choices[0].finish_reason in ("stop", "length")
    assert plain.usage.prompt_tokens > 0 and plain.usage.completion_tokens > 0
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens

    stream = client.chat.completions.create(
        model=MODEL, messages=msgs, temperature=0, max_tokens=30, stream=True, stream_options={"include_usage": True}
    )
    parts, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    assert "".join(parts) == text
    assert finish == plain.choices[0].finish_reason
    assert usage is not None and usage.total_tokens == plain.usage.total_tokens


def test_completion_plain_and_streaming(client):
    plain = client.completions.create(model=MODEL, prompt="The quick brown fox", max_tokens=10, temperature=0)
    assert plain.choices[0].finish_reason == "length"
    assert plain.usage.completion_tokens == 10
    text = plain.choices[0].text
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(model=MODEL, prompt="The quick brown fox", max_tokens=10, temperature=0, stream=True)
        if c.choices
    )
    assert streamed == text


def test_stop_sequence(client):
    out = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0, stop=["7"])
    assert "7" not in out.choices[0].text
    assert out.choices[0].finish_reason == "stop"


def test_errors_map_to_sdk_exceptions(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], n=2)
    assert e.value.param == "n"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[])
