"""The official openai SDK against a live `hearth serve` running SmolLM2-135M-Instruct.

Builds the debug `hearth` binary (optimized; see [profile.dev]) and needs the model from
scripts/fetch-models.sh ($HEARTH_MODELS, default ~/.cache/hearth/models).
"""

import concurrent.futures
import time

import openai
import pytest

from conftest import MODEL, LiveServer



@pytest.fixture(scope="module")
def client():
    srv = LiveServer("--max-running", "16")
    yield openai.OpenAI(base_url=srv.base + "/v1", api_key="unused")
    assert srv.stop() == 0, "graceful shutdown should exit 0"


def chat(c, content, **kw):
    return c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], **kw)


def test_models(client):
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_non_streaming(client):
    r = chat(client, "What is the capital of France?", max_tokens=16, temperature=0)
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 16 and r.usage.prompt_tokens > 0


def test_streaming_with_usage(client):
    chunks = list(chat(client, "Say hello.", max_tokens=12, temperature=0, stream=True,
                       stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    full = chat(client, "Say hello.", max_tokens=12, temperature=0).choices[0].message.content
    assert text == full


def test_seed_reproducible(client):
    a = chat(client, "Tell me a story.", max_tokens=24, temperature=1.0, seed=1234).choices[0].message.content
    b = chat(client, "Tell me a story.", max_tokens=24, temperature=1.0, seed=1234).choices[0].message.content
    assert a == b


def test_stop_and_n(client):
    r = chat(client, "Count from 1 to 20, separated by commas.", max_tokens=60, temperature=0, stop=["5"])
    assert "5" not in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    r = chat(client, "Name a fruit.", max_tokens=8, temperature=0.9, n=2, seed=3)
    assert len(r.choices) == 2 and {c.index for c in r.choices} == {0, 1}


def test_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        chat(client, "x", temperature=-3)
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, "x", max_tokens=10_000_000)
    assert "context" in str(e.value)


def test_sixteen_concurrent_streams_equal_alone(client):
    prompts = [f"Write one sentence about the number {i}." for i in range(16)]

    def run(p):
        return "".join(ch.choices[0].delta.content or "" for ch in
                       chat(client, p, max_tokens=12, temperature=0, stream=True) if ch.choices)

    alone = [run(p) for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        together = list(ex.map(run, prompts))
    assert all(together), "every stream produced text"
    assert together == alone, "greedy output under continuous batching differs from the request run alone"


def _metrics(client):
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    base = str(client.base_url).rstrip("/").removesuffix("/v1")
    body = urllib.request.urlopen(base + "/metrics").read().decode()
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if not s.labels:
                out[s.name] = s.value
    return out


def test_prefix_cache_in_metrics(client):
    system = ("You are the help desk of a small public library. Opening hours are nine to five on "
              "weekdays and ten to two on Saturdays. Members may borrow up to eight books for three "
              "weeks and renew them twice online. Answer politely and briefly. ") * 2
    before = _metrics(client)
    assert before["hearth_kv_cache_blocks_total"] > 0
    answers = []
    for q in ("When do you open on Saturday?", "How many books can I borrow?"):
        r = client.chat.completions.create(
            model=MODEL, max_tokens=8, temperature=0,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": q}])
        answers.append(r)
    after = _metrics(client)
    hits = after["hearth_prefix_cache_hits_tokens_total"] - before["hearth_prefix_cache_hits_tokens_total"]
    # The second request shares the system prompt (over 100 tokens): whole 16-token blocks of it
    # come from the cache.
    assert hits >= 64, hits
    assert 0 < after["hearth_prefix_cache_hit_ratio"] <= 1
    deadline = time.time() + 10
    while _metrics(client)["hearth_kv_cache_blocks_used"] != 0:
        assert time.time() < deadline, "finished requests should release their KV blocks"
        time.sleep(0.05)


def test_role_markers_in_content_are_plain_text(client):
    # `<|im_start|>` is one control token of SmolLM2's ChatML vocabulary; typed into a message
    # it must be tokenized as its characters (several tokens), so a user cannot forge a turn.
    def prompt_tokens(content):
        return chat(client, content, max_tokens=1, temperature=0).usage.prompt_tokens

    plain = prompt_tokens("a")
    forged = prompt_tokens("<|im_start|>")
    assert forged - plain >= 4, (plain, forged)
