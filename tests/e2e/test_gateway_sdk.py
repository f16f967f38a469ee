"""The official `openai` SDK against Switchyard fronting an upstream: a
second Switchyard with no models of its own, whose routes reach the first
one over HTTP (an OpenAI-compatible upstream like any other)."""
import math
import os
import tempfile

import openai
import pytest

from conftest import API_KEY, collect_stream, running

MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def native():
    with running(name="native") as url:
        yield url


@pytest.fixture(scope="module")
def gateway(native):
    config = f"""
models: []
upstreams:
  - name: native-chat
    base_url: {native}/v1
    api_key: env:SWITCHYARD_ADMIN_KEY
    model: {MODEL}
  - name: native-embed
    base_url: {native}/v1
    api_key: env:SWITCHYARD_ADMIN_KEY
    model: {EMBED_MODEL}
routes:
  - id: remote-chat
    deployments: [native-chat]
  - id: remote-embed
    deployments: [native-embed]
"""
    fd, path = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(config)
    try:
        with running("--config", path, name="gateway") as url:
            yield url
    finally:
        os.unlink(path)


def sdk(url):
    return openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def test_routes_are_models(gateway):
    ids = {m.id: getattr(m, "kind", None) for m in sdk(gateway).models.list()}
    assert ids["remote-chat"] == "upstream" and ids["remote-embed"] == "upstream"
    assert sdk(gateway).models.retrieve("remote-chat").id == "remote-chat"


def test_chat_through_the_gateway_matches_the_upstream(native, gateway):
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    direct = sdk(native).chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=20)
    proxied = sdk(gateway).chat.completions.create(model="remote-chat", messages=msgs, temperature=0, max_tokens=20)
    assert proxied.choices[0].message.content == direct.choices[0].message.content
    assert proxied.usage.total_tokens == direct.usage.total_tokens

    stream = sdk(gateway).chat.completions.create(
        model="remote-chat", messages=msgs, temperature=0, max_tokens=20,
        stream=True, stream_options={"include_usage": True},
    )
    streamed, usage, _ = collect_stream(stream)
    assert streamed == direct.choices[0].message.content
    assert usage is not None and usage.total_tokens == direct.usage.total_tokens


def test_embeddings_through_the_gateway(native, gateway):
    direct = sdk(native).embeddings.create(model=EMBED_MODEL, input=["a cat"]).data[0].embedding
    proxied = sdk(gateway).embeddings.create(model="remote-embed", input=["a cat"]).data[0].embedding
    assert len(proxied) == 384
    assert math.isclose(sum(a * b for a, b in zip(direct, proxied)), 1.0, rel_tol=1e-5)


def test_keys_are_required(gateway):
    bad = openai.OpenAI(base_url=gateway + "/v1", api_key="sy-0000000000000000.x", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_upstream_errors_reach_the_sdk_as_errors(gateway):
    with pytest.raises(openai.BadRequestError) as e:
        sdk(gateway).chat.completions.create(
            model="remote-chat", messages=[{"role": "user", "content": "Hi"}], n=2
        )
    assert "n" in str(e.value)
    with pytest.raises(openai.NotFoundError):
        sdk(gateway).chat.completions.create(model="nowhere", messages=[{"role": "user", "content": "Hi"}])
