"""Shared by the live-model tests: start `hearth serve` on SmolLM2-135M-Instruct and stop it.

Builds the debug `hearth` binary once per session (optimized; see [profile.dev]) and needs the
model from scripts/fetch-models.sh ($HEARTH_MODELS, default ~/.cache/hearth/models). The
server's log goes to a file in its data directory (a pipe nobody reads would fill up and stall
the server), and is shown when it fails to start.
"""

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]
MODELS = Path(os.environ.get("HEARTH_MODELS", Path.home() / ".cache/hearth/models"))
MODEL_FILE = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = "smollm2"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
HEARTH = TARGET / "debug" / "hearth"

_built = False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build():
    global _built
    if not _built:
        subprocess.run(["cargo", "build", "--quiet", "-p", "hearth-cli"], cwd=REPO, check=True)
        _built = True


class LiveServer:
    """`hearth serve MODEL --alias smollm2 --port P --threads 2 --data-dir D *extra`, ready (its
    port accepts connections: models load before the listener opens)."""

    def __init__(self, *extra, data_dir=None, model_file=MODEL_FILE, alias=MODEL):
        assert model_file.exists(), f"{model_file} is missing: run scripts/fetch-models.sh"
        build()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="hearth-test-")
        self.log_path = Path(self.data_dir) / "serve.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(HEARTH), "serve", str(model_file), "--alias", alias, "--port", str(self.port),
             "--threads", "2", "--data-dir", self.data_dir, *extra],
            stderr=self._log)
        for _ in range(600):
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.proc.kill()
        raise RuntimeError("hearth serve did not start:\n" + self.log())

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        """SIGTERM and wait; returns the exit code (0 after a graceful drain)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        rc = self.proc.wait(timeout=30)
        self._log.close()
        return rc
