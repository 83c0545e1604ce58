"""Start app.py as a real server on a free port for the tests (and the screenshot script)."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(cmd: list[str], url: str, timeout: float, env: dict | None = None, log: Path | None = None):
    """Run a server command, wait until ``url`` answers, yield, then stop it (one copy of this loop for all tests).
    ``log``: a file that gets the server's output (stdout and stderr), for tests that read what it said."""
    out = open(log, "w") if log else subprocess.PIPE
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                said = Path(log).read_text() if log else proc.stdout.read()
                raise RuntimeError(f"{' '.join(cmd[1:3])} exited early:\n{said}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    raise TimeoutError(f"{' '.join(cmd[1:3])} did not answer on {url} within {timeout}s")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()


@contextlib.contextmanager
def running_app(*args: str, timeout: float = 300, env: dict | None = None, log: Path | None = None):
    """Yields the app's URL. ``env``: extra environment variables for the server (e.g. its temp folders); ``log``:
    a file for its output."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
           **(env or {})}
    with serving([sys.executable, str(ROOT / "app.py"), "--port", str(port), *args], f"http://127.0.0.1:{port}/",
                 timeout, env, log) as url:
        yield url
