"""The synthetic body model used when the user gives no SMPL file: made on first use, cached.

The cache folder is ``$SMPLIFY3D_CACHE`` or ``~/.cache/smplify3d``; the model lives in
``<cache>/synthetic_body_v1/``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

SYNTHETIC_MODEL_VERSION = "synthetic_body_v1"


def cache_dir() -> Path:
    """Root of the project's cache folder (created if missing)."""
    root = Path(os.environ.get("SMPLIFY3D_CACHE", Path.home() / ".cache" / "smplify3d")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def default_body_model_dir() -> Path:
    """Folder holding the synthetic SMPL-format model; written atomically on first use."""
    from smplify3d_core.body.synthetic import write_synthetic_body_model

    target = cache_dir() / SYNTHETIC_MODEL_VERSION
    if (target / "SMPL_NEUTRAL.pkl").is_file():
        return target
    staging = Path(tempfile.mkdtemp(prefix=".synthetic_body_", dir=cache_dir()))
    try:
        write_synthetic_body_model(staging)
        try:
            staging.rename(target)
        except OSError:  # another process won the race
            if not (target / "SMPL_NEUTRAL.pkl").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
