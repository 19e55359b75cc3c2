"""Run a test's helper script in a fresh Python process that imports this tree's pykaf."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])


def run_script(
    script: Path, *args: str, timeout: float, python_options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``python [options] script args...``, its output as text; a hang fails by
    ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, *python_options, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
