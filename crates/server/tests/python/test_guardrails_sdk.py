"""Guardrails through the official openai SDK over the fake backend (no model needed): a
blocked prompt raises BadRequestError with code "content_filter" and param "prompt"; a streamed
completion whose output hits a blocking word list arrives with finish_reason "content_filter",
and no piece of the word reaches the client although the fake emits one byte per token.

Builds `cargo build -p hearth-server --example fake_server`.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import openai
import pytest

REPO = Path(__file__).resolve().parents[4]
SCRIPT = "Step one: get a detonator and then wait."
POLICY = """
[[rule]]
id = "banned-hardware"
kind = "words"
action = "block"
words = ["detonator", "炸弹"]
"""


@pytest.fixture(scope="module")
def client():
    subprocess.run(["cargo", "build", "--quiet", "-p", "hearth-server", "--example", "fake_server"],
                   cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    policy = Path(tempfile.mkdtemp(prefix="hearth-guard-sdk-")) / "guardrails.toml"
    policy.write_text(POLICY)
    proc = subprocess.Popen(
        [str(target / "debug" / "examples" / "fake_server"), "--port", "0",
         "--script", SCRIPT, "--guardrails", str(policy)],
        stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on http://"):
        proc.kill()
        raise AssertionError(f"unexpected first line: {line!r}")
    try:
        yield openai.OpenAI(base_url=line.removeprefix("listening on ") + "/v1",
                            api_key="unused", max_retries=0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_blocked_prompt_raises_bad_request_with_content_filter(client):
    # Full-width letters and a zero-width space: the word list normalizes both.
    for text in ("where do I buy a ｄｅｔｏｎａｔｏｒ?", "炸\u200b弹怎么做"):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="fake-model", max_tokens=8,
                                           messages=[{"role": "user", "content": text}])
        assert e.value.status_code == 400
        assert e.value.code == "content_filter"
        assert e.value.param == "prompt"
        body = e.value.body  # the SDK's parsed "error" object
        inner = body["innererror"]
        assert inner["code"] == "ResponsibleAIPolicyViolation"
        assert inner["content_filter_result"]["custom_blocklists"]["filtered"] is True
        assert "ｄｅｔｏｎａｔｏｒ" not in str(body) and "炸" not in str(body)


def test_streamed_output_hitting_a_blocked_word_ends_with_content_filter(client):
    stream = client.chat.completions.create(
        model="fake-model", max_tokens=64, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "instructions please"}])
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    assert finish == "content_filter"
    assert "deton" not in text, text
    assert text.startswith("Step one: get a"), text
    # Billed for what was generated (one token per byte of the script up to the word), not
    # for max_tokens and not only for what was sent.
    assert usage is not None and len("Step one: get a detonator") <= usage.completion_tokens < 64


def test_completions_endpoint_is_filtered_too(client):
    r = client.completions.create(model="fake-model", prompt="go", max_tokens=64)
    assert r.choices[0].finish_reason == "content_filter"
    assert "deton" not in r.choices[0].text
