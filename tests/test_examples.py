"""The tutorial's example components run together, as the docs show them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parent.parent / "examples" / "tutorial"


def test_tutorial_ensemble_runs_end_to_end():
    result = subprocess.run(
        [sys.executable, "run_all.py", "30"],
        cwd=TUTORIAL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "environment: 30 steps" in result.stdout
    evolution = [
        line for line in result.stdout.splitlines() if line.startswith("evolution:")
    ]
    assert len(evolution) == 2
    assert "Traceback" not in result.stderr
