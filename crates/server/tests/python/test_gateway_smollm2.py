"""The gateway of a live `hearth serve` (SmolLM2) seen through the official openai SDK:
the SDK's own exception classes for 401 and 429, OpenAI's rate-limit headers, x-request-id.
"""

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

REPO = Path(__file__).resolve().parents[4]
MODELS = Path(os.environ.get("HEARTH_MODELS", Path.home() / ".cache/hearth/models"))
MODEL_FILE = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = "smollm2"
ADMIN_KEY = "hk-test-admin-0123456789"
RPM = 4


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    assert MODEL_FILE.exists(), f"{MODEL_FILE} is missing: run scripts/fetch-models.sh"
    subprocess.run(["cargo", "build", "--quiet", "-p", "hearth-cli"], cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    port = _free_port()
    data = tempfile.mkdtemp(prefix="hearth-gw-")
    proc = subprocess.Popen(
        [str(target / "debug" / "hearth"), "serve", str(MODEL_FILE), "--alias", MODEL,
         "--port", str(port), "--threads", "2", "--api-key", ADMIN_KEY,
         "--global-rpm", str(RPM), "--data-dir", data],
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/v1"
    probe = openai.OpenAI(base_url=base, api_key="wrong", max_retries=0)
    for _ in range(300):
        try:
            probe.models.list()
            break
        except openai.AuthenticationError:
            break  # up and refusing the wrong key: started
        except openai.APIConnectionError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("hearth serve did not start: " + proc.stderr.read().decode())
    yield base
    proc.terminate()
    assert proc.wait(timeout=30) == 0, "graceful shutdown should exit 0"


def _chat(c):
    return c.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0)


def test_keys_and_exact_rate_limit(server):
    # No key at all (the SDK insists on one, so plain HTTP): 401 in OpenAI's error shape.
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server + "/models")
    assert e.value.code == 401
    assert json.loads(e.value.read())["error"]["code"] == "invalid_api_key"
    # A wrong key: the SDK's AuthenticationError, OpenAI's code, the key not echoed.
    c = openai.OpenAI(base_url=server, api_key="sk-not-a-real-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        c.models.list()
    assert e.value.code == "invalid_api_key"
    assert "sk-not-a-real-key" not in str(e.value)

    c = openai.OpenAI(base_url=server, api_key=ADMIN_KEY, max_retries=0)
    remaining = []
    for _ in range(RPM):
        raw = _chat(c)
        assert raw.headers["x-request-id"].startswith("req_")
        assert raw.headers["x-ratelimit-limit-requests"] == str(RPM)
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
        assert raw.parse().choices[0].message.content is not None
    assert remaining == list(range(RPM - 1, -1, -1))
    # The next one in the same minute is refused: RateLimitError with Retry-After.
    with pytest.raises(openai.RateLimitError) as e:
        _chat(c)
    assert e.value.code == "rate_limit_exceeded"
    assert "global" in e.value.message and "requests per minute" in e.value.message
    assert 1 <= int(e.value.response.headers["retry-after"]) <= 60
