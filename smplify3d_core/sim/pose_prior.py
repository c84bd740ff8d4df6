"""The project's own GMM pose prior, fitted to simulator poses (gmm_08.pkl layout).

Used by tests and the demo in place of SMPLify's licensed-free but separately distributed
``gmm_08.pkl``. Cached in the project cache folder after the first fit.
"""
from __future__ import annotations

from pathlib import Path

from smplify3d_core.body.default_model import default_pose_prior_path
from smplify3d_core.body.priors import fit_pose_gmm, save_gmm_pickle
from smplify3d_core.sim.poses import pose_corpus

def write_simulator_pose_prior(path, samples: int = 4000, seed: int = 0, components: int = 8) -> Path:
    """Fit an 8-component full-covariance GMM to ``samples`` simulator poses and write it."""
    gmm = fit_pose_gmm(pose_corpus(samples, seed=seed), n_components=components, seed=seed)
    path = Path(path)
    save_gmm_pickle(gmm, path)
    return path


def simulator_pose_prior_path() -> Path:
    """Path of the project's default pose prior (:func:`default_pose_prior_path`), fitted on first use."""
    path = default_pose_prior_path()
    if not path.is_file():
        staging = path.with_suffix(f".tmp{id(path)}")
        write_simulator_pose_prior(staging)
        staging.replace(path)
    return path
