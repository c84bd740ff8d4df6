"""The lint guard rail: `ruff check .` from the repository root passes (rules in ruff.toml)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> str:
    """The ruff executable of this interpreter's environment (the venv's, installed by
    scripts/setup.sh with the test extra), else one on PATH; skips the test when there is none."""
    beside = Path(sys.executable).parent / "ruff"
    if beside.is_file():
        return str(beside)
    found = shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed (bash scripts/setup.sh installs the pinned version into .venv)")
    return found


def test_ruff_check_passes_on_the_repository():
    assert (ROOT / "ruff.toml").is_file()
    command = [_ruff(), "check", "--no-cache", "--output-format", "concise", "."]
    process = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, f"ruff check . found problems:\n{process.stdout}{process.stderr}"
