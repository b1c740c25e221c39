"""Shared test plumbing: free ports, the fake model as a real process, the CLI as a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shadowd.demo.traffic import support_schema

ROOT = Path(__file__).resolve().parents[1]
DEMO_BEHAVIOURS = ROOT / "shadowd" / "demo" / "behaviours.yaml"
DEMO_CONFIG = ROOT / "shadowd" / "demo" / "shadowd.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status < 500:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s} s")
        time.sleep(0.1)


@contextmanager
def fake_model_process(behaviours: Path | None = DEMO_BEHAVIOURS) -> Iterator[str]:
    """`shadowd fake-model` in its own process on a free loopback port; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "shadowd", "fake-model", "--port", str(port)]
    if behaviours is not None:
        command += ["--behaviours", str(behaviours)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def write_config(folder: Path, base_url: str, extra: str = "", rollouts: str | None = None) -> Path:
    """A config with the demo's two rollouts and the support-summary schema, pointed at `base_url`."""
    (folder / "schemas").mkdir(parents=True, exist_ok=True)
    (folder / "schemas" / "support-summary.json").write_text(json.dumps(support_schema()))
    default_rollouts = """
  - name: opus-4-7
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    gate: {min_samples: 50}
  - name: sonnet-4-6
    baseline: claude-opus-4-6
    candidate: claude-sonnet-4-6
    gate: {min_samples: 50}
"""
    text = f"""
models:
  base_url: {base_url}
  timeout_s: 30
  max_concurrency: 96
  max_attempts: 4
routes:
  support-summary:
    output_schema: schemas/support-summary.json
    ignore_paths: ["$.generated_at"]
rollouts:{rollouts or default_rollouts}
{extra}
"""
    path = folder / "shadowd.yaml"
    path.write_text(text)
    return path


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m shadowd ARGS` as a real process and return its result (never raises on exit code)."""
    return subprocess.run(
        [sys.executable, "-m", "shadowd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "ANTHROPIC_API_KEY": "test-key", **(env or {})},
        cwd=ROOT,
    )


def run_cli_json(*args: str, env: dict[str, str] | None = None) -> Any:
    result = run_cli(*args, "--json", env=env)
    assert result.returncode == 0, f"shadowd {' '.join(args)} exited {result.returncode}: {result.stderr[-3000:]}"
    return json.loads(result.stdout)


@contextmanager
def replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    """`owner.name` is `value` inside the block (a shortcut turned off to get its slow path's answer)."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)
