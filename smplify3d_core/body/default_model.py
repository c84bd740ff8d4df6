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


#: File name of the project's GMM pose prior (8 components, gmm_08.pkl layout) in the cache folder.
DEFAULT_POSE_PRIOR_NAME = "simulator_gmm_08_v1.pkl"


def default_pose_prior_path() -> Path:
    """Where the project's own pose prior lives: ``<cache>/simulator_gmm_08_v1.pkl``.

    Written once by ``smplify3d make-pose-prior`` (``scripts/setup.sh`` runs it; the offline
    commands write it on first use); the node and the frame path only read it.
    """
    return cache_dir() / DEFAULT_POSE_PRIOR_NAME
