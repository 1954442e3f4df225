"""`hearth serve --tls-cert/--tls-key`: the official openai SDK over HTTPS (a self-signed
certificate made by the openssl CLI, trusted by the client), and plain HTTP refused."""

import http.client
import shutil
import subprocess
import tempfile
from pathlib import Path

import ssl
import urllib.error
import urllib.request
import openai
import pytest

from conftest import LiveServer


@pytest.fixture(scope="module")
def tls_server():
    assert shutil.which("openssl"), "the openssl CLI makes the test certificate"
    d = Path(tempfile.mkdtemp(prefix="hearth-tls-"))
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    srv = LiveServer("--tls-cert", str(cert), "--tls-key", str(key), data_dir=str(d))
    yield srv.port, cert
    assert srv.stop() == 0


def test_sdk_over_https(tls_server):
    port, cert = tls_server
    c = openai.OpenAI(base_url=f"https://127.0.0.1:{port}/v1", api_key="unused",
                      http_client=openai.DefaultHttpxClient(verify=str(cert)))
    r = c.chat.completions.create(model="smollm2", max_tokens=4, temperature=0,
                                  messages=[{"role": "user", "content": "Hi"}])
    assert r.usage.completion_tokens > 0
    # An untrusted client fails the handshake; plain HTTP on the TLS port gets no HTTP answer.
    trusted = ssl.create_default_context(cafile=str(cert))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/health", context=trusted) as r:
        assert r.status == 200
    with pytest.raises(urllib.error.URLError) as e:
        urllib.request.urlopen(f"https://127.0.0.1:{port}/health",
                               context=ssl.create_default_context())
    assert isinstance(e.value.reason, ssl.SSLCertVerificationError)
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
