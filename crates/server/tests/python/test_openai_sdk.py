"""The official `openai` Python SDK against hearth-server over the fake backend.

The SDK is the oracle for "OpenAI-compatible": it parses every response into
its own pydantic models and raises typed errors from status codes.

Run: pip install openai pytest && python3 -m pytest crates/server/tests/python
(builds `cargo build -p hearth-server --example fake_server` first).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

REPO = Path(__file__).resolve().parents[4]
SCRIPT = "Hello from the fake backend. Goodbye, wörld!"
MODEL = "fake-model"


def _binary() -> Path:
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", "hearth-server", "--example", "fake_server"],
        cwd=REPO,
        check=True,
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    path = target / "debug" / "examples" / "fake_server"
    assert path.exists(), f"{path} was not built"
    return path


def _start(script):
    proc = subprocess.Popen(
        [str(_binary()), "--port", "0", "--script", script],
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
    )
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on http://"):
        proc.kill()
        raise AssertionError(f"unexpected first line: {line!r}")
    return proc, line.removeprefix("listening on ")


@pytest.fixture(scope="module")
def server():
    proc, url = _start(SCRIPT)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


TOOL_SCRIPT = (
    'Checking.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def tool_client():
    proc, url = _start(TOOL_SCRIPT)
    try:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def chat(client, **kw):
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], **kw
    )


def test_models(client):
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL]
    assert models[0].owned_by == "hearth"
    assert client.models.retrieve(MODEL).id == MODEL


def test_non_streaming(client):
    r = chat(client)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert r.model == MODEL
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == SCRIPT
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == len(SCRIPT.encode())  # one token per byte
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_with_usage_chunk(client):
    chunks = list(chat(client, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == SCRIPT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == len(SCRIPT.encode())
    assert all(c.usage is None for c in chunks[:-1])


def test_stop(client):
    r = chat(client, stop=["Goodbye"])
    assert r.choices[0].message.content == "Hello from the fake backend. "
    assert r.choices[0].finish_reason == "stop"
    streamed = "".join(
        c.choices[0].delta.content or "" for c in chat(client, stop="Goodbye", stream=True)
    )
    assert streamed == "Hello from the fake backend. "


def test_n_2(client):
    r = chat(client, n=2, max_tokens=5)
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.message.content == SCRIPT[:5] for c in r.choices)
    assert all(c.finish_reason == "length" for c in r.choices)
    assert r.usage.completion_tokens == 10


def test_completions(client):
    r = client.completions.create(model=MODEL, prompt="Say:", max_tokens=5, echo=True)
    assert r.object == "text_completion"
    assert r.choices[0].text == "Say:" + SCRIPT[:5]
    chunks = list(client.completions.create(model=MODEL, prompt="Say:", max_tokens=5, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == SCRIPT[:5]


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404
    assert e.value.code == "model_not_found"
    assert e.value.param == "model"


def test_bad_param_is_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, temperature=5)
    assert e.value.param == "temperature"
    assert e.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, max_tokens=10**6)
    assert e.value.code == "context_length_exceeded"
    assert "256" in e.value.message


def test_metrics_parse_with_prometheus_client(server, client):
    """prometheus_client's own parser is the oracle for the exposition format."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    chat(client, max_tokens=3)
    body = urllib.request.urlopen(f"{server}/metrics").read().decode()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    # prometheus_client strips the _total suffix from counter family names.
    requests = families["hearth_requests"]
    assert requests.type == "counter"
    ok = [s for s in requests.samples if s.labels == {"endpoint": "chat_completions", "model": MODEL, "status": "200"}]
    assert ok and ok[0].value >= 1
    ttft = families["hearth_time_to_first_token_seconds"]
    assert ttft.type == "histogram"
    buckets = [s for s in ttft.samples if s.name.endswith("_bucket")]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts), "buckets are cumulative"
    assert buckets[-1].labels["le"] == "+Inf"
    count = next(s.value for s in ttft.samples if s.name.endswith("_count"))
    assert buckets[-1].value == count
    assert families["hearth_requests_running"].type == "gauge"


def test_tool_calls(tool_client):
    r = chat(tool_client, tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_tool_calls_streaming(tool_client):
    chunks = list(chat(tool_client, tools=TOOLS, stream=True))
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert content == "Checking."
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1
    assert calls[0].index == 0
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
