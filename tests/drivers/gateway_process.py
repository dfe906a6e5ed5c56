"""Running the drawbridge binary from tests that start their own gateway: the binary's path,
free ports, commands, a clean stop, and reading one table of a generated config."""

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("DRAWBRIDGE_BIN", ROOT / "target" / "release" / "drawbridge"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args, env=None, timeout=30):
    """`drawbridge ARGS…`, output captured as text."""
    return subprocess.run([str(BINARY), *args], capture_output=True, text=True, env=env, timeout=timeout)


def stop(proc):
    """SIGTERM, then SIGKILL if the process has not exited within 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def config_table(config_text, name):
    """The text of one `[name]` table of a TOML document, header included."""
    m = re.search(rf"^\[{re.escape(name)}\]\n.*?(?=^\[|\Z)", config_text, re.M | re.S)
    assert m, f"[{name}] not in the config"
    return m.group(0).strip() + "\n"
