"""The official `openai` Python SDK against the real switchyard binary.

Run by scripts/test.sh with SWITCHYARD_BIN pointing at the built binary.
"""
import array
import base64
import math

import openai
import pytest

from conftest import API_KEY, collect_stream, running

MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def base_url():
    with running() as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def test_models_list(client):
    kinds = {m.id: getattr(m, "kind", None) for m in client.models.list()}
    assert kinds[MODEL] == "chat"
    assert kinds[EMBED_MODEL] == "embedding"
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
    streamed, usage, finish = collect_stream(stream)
    assert streamed == text
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


EMBED_TEXTS = ["The cat sat on the mat.", "Ein Hund bellt im Garten.", "rockets 🚀 and pizza 🍕", "word " * 400]


def unit_vector(v):
    assert len(v) == 384
    assert abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-5


def test_embeddings_float_and_base64(client):
    floats = client.embeddings.create(model=EMBED_MODEL, input=EMBED_TEXTS, encoding_format="float")
    assert [d.index for d in floats.data] == list(range(len(EMBED_TEXTS)))
    assert floats.model == EMBED_MODEL
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 256
    for d in floats.data:
        unit_vector(d.embedding)

    # Without encoding_format the SDK asks for base64 and decodes it itself.
    decoded = client.embeddings.create(model=EMBED_MODEL, input=EMBED_TEXTS)
    # Asked for explicitly, base64 comes back as the raw string.
    raw = client.embeddings.create(model=EMBED_MODEL, input=EMBED_TEXTS, encoding_format="base64")
    for f, d, r in zip(floats.data, decoded.data, raw.data):
        unit_vector(d.embedding)
        assert isinstance(r.embedding, str)
        from_raw = array.array("f", base64.b64decode(r.embedding)).tolist()
        assert max(abs(a - b) for a, b in zip(f.embedding, d.embedding)) < 1e-6
        assert from_raw == d.embedding

    one = client.embeddings.create(model=EMBED_MODEL, input=EMBED_TEXTS[0], encoding_format="float")
    assert max(abs(a - b) for a, b in zip(one.data[0].embedding, floats.data[0].embedding)) < 1e-6


def test_embedding_errors_map_to_sdk_exceptions(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=EMBED_MODEL, input="hi", dimensions=128)
    assert e.value.param == "dimensions"
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=EMBED_MODEL, input="")
    assert e.value.param == "input"
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=MODEL, input="hi")
    assert e.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="hi")
