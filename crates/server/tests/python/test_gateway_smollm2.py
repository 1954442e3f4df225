"""The gateway of a live `hearth serve` (SmolLM2) driven like an operator would: keys made with
`hearth keys create`, calls through the official openai SDK (its own exception classes for 401,
403 and 429, OpenAI's rate-limit headers), the admin API, and `hearth audit verify` catching an
edited record in the SQLite file.
"""

import json
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request

import openai
import pytest

from conftest import HEARTH, MODEL, LiveServer

ADMIN_KEY = "hk-test-admin-0123456789"


def cli(data, *args):
    r = subprocess.run([str(HEARTH), *args, "--data-dir", data], capture_output=True, text=True)
    return r


def new_key(data, *args):
    r = cli(data, "keys", "create", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def http(method, url, key=None, body=None):
    req = urllib.request.Request(url, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="module")
def server():
    srv = LiveServer("--require-auth", "--api-key", ADMIN_KEY, "--audit-bodies", "full")
    yield srv.base, srv.data_dir, srv
    srv.stop()


def sdk(base, key):
    return openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)


def _chat(c, model=MODEL):
    return c.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0)


def test_no_key_and_wrong_key(server):
    base, _, _ = server
    status, body = http("GET", base + "/v1/models")
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError) as e:
        sdk(base, "sk-not-a-real-key").models.list()
    assert e.value.code == "invalid_api_key"
    assert "sk-not-a-real-key" not in str(e.value)


def test_per_key_rpm_is_exact_with_openai_headers(server):
    base, data, _ = server
    k = new_key(data, "--name", "limited", "--rpm", "4")
    c = sdk(base, k["key"])
    remaining = []
    for _ in range(4):
        raw = _chat(c)
        assert raw.headers["x-request-id"].startswith("req_")
        assert raw.headers["x-ratelimit-limit-requests"] == "4"
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
        assert raw.parse().choices[0].message.content is not None
    assert remaining == [3, 2, 1, 0]
    with pytest.raises(openai.RateLimitError) as e:
        _chat(c)
    assert e.value.code == "rate_limit_exceeded"
    assert f"key '{k['id']}'" in e.value.message and "requests per minute" in e.value.message
    assert 1 <= int(e.value.response.headers["retry-after"]) <= 60


def test_roles_models_and_revocation(server):
    base, data, _ = server
    user = new_key(data, "--name", "u", "--models", MODEL)
    narrow = new_key(data, "--name", "n", "--models", "some-other-model")
    auditor = new_key(data, "--name", "a", "--role", "auditor")
    # A user may chat on its model but not read admin routes, whatever the spelling.
    assert _chat(sdk(base, user["key"])).parse().usage.completion_tokens > 0
    for path in ("/admin/v1/keys", "/ADMIN//v1/keys/", "/%61dmin/v1/keys", "/admin/v1/audit"):
        status, body = http("GET", base + path, user["key"])
        assert status == 403, (path, body)
    with pytest.raises(openai.PermissionDeniedError) as e:
        _chat(sdk(base, narrow["key"]))
    assert e.value.code == "model_not_allowed"
    # An auditor reads the audit log and usage but may not chat or create keys.
    status, body = http("GET", base + "/admin/v1/audit?limit=5", auditor["key"])
    assert status == 200 and body["data"], body
    status, _ = http("GET", base + "/admin/v1/usage?group_by=key", auditor["key"])
    assert status == 200
    # Filtered by key: only that key's records and usage (the user key made one chat and four
    # refused admin calls).
    time.sleep(0.3)  # the audit writer batches every 100 ms
    status, body = http("GET", base + f"/admin/v1/audit?key={user['id']}", auditor["key"])
    assert status == 200 and len(body["data"]) == 5, body
    assert {r["key_id"] for r in body["data"]} == {user["id"]}
    assert sorted(r["status"] for r in body["data"]) == [200, 403, 403, 403, 403]
    status, body = http("GET", base + f"/admin/v1/usage?group_by=model&key={user['id']}",
                        auditor["key"])
    assert status == 200 and [(r["group"], r["requests"]) for r in body["data"]] == [(MODEL, 1)], body
    with pytest.raises(openai.PermissionDeniedError):
        _chat(sdk(base, auditor["key"]))
    status, _ = http("POST", base + "/admin/v1/keys", auditor["key"], {"name": "x"})
    assert status == 403
    # The admin makes a key over the API (secret shown once), it works at once, and its
    # revocation takes effect on the next request.
    status, made = http("POST", base + "/admin/v1/keys", ADMIN_KEY, {"name": "api-made", "rpm": 50})
    assert status == 201 and made["key"].startswith(made["prefix"])
    assert sdk(base, made["key"]).models.list().data[0].id == MODEL
    status, _ = http("DELETE", base + f"/admin/v1/keys/{made['id']}", ADMIN_KEY)
    assert status == 200
    with pytest.raises(openai.AuthenticationError):
        sdk(base, made["key"]).models.list()
    status, body = http("GET", base + "/admin/v1/keys", ADMIN_KEY)
    assert all("key" not in k for k in body["data"]), "secrets are never listed"


def test_audit_chain_after_shutdown(server):
    base, data, srv = server
    status, usage = http("GET", base + "/admin/v1/usage?group_by=model", ADMIN_KEY)
    assert status == 200
    assert srv.stop() == 0
    r = cli(data, "audit", "verify")
    assert r.returncode == 0 and "chain intact" in r.stdout, r.stdout + r.stderr
    db = sqlite3.connect(os.path.join(data, "hearth.db"))
    n, refused, bodies = db.execute(
        "SELECT COUNT(*), SUM(status >= 400), SUM(response_body LIKE '%chat.completion%') "
        "FROM audit_log").fetchone()
    assert n >= 20 and refused >= 8 and bodies >= 6, (n, refused, bodies)
    # Usage rollups add up to the chat requests that ran on the model.
    chat_tokens = db.execute(
        "SELECT SUM(completion_tokens) FROM audit_log WHERE model = ? AND status = 200",
        (MODEL,)).fetchone()[0]
    rolled = db.execute("SELECT SUM(completion_tokens) FROM usage_daily WHERE model = ?",
                        (MODEL,)).fetchone()[0]
    assert rolled == chat_tokens > 0
    # Edit one record: verify fails and names it.
    seq = db.execute("SELECT MIN(seq) FROM audit_log WHERE status = 401").fetchone()[0]
    db.execute("UPDATE audit_log SET status = 200 WHERE seq = ?", (seq,))
    db.commit()
    r = cli(data, "audit", "verify")
    assert r.returncode != 0 and "edited" in r.stderr, r.stderr
    assert f"BROKEN at record {seq} " in r.stderr, r.stderr
