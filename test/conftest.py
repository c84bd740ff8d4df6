"""Shared fixtures: the synthetic SMPL-format body model, built once per test session."""
import os
import tempfile

import pytest
import torch

# Keep the project's cache (the synthetic model made on first use) out of the user's home.
os.environ.setdefault("SMPLIFY3D_CACHE", tempfile.mkdtemp(prefix="smplify3d_test_cache_"))
# One torch thread: the tests' tensors are small, and two threads on a busy 2-core machine spin.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def default_pose_prior():
    """The project's pose prior in the test cache, written once (what `scripts/setup.sh` does for users);
    the node processes the tests start read it from there (they inherit SMPLIFY3D_CACHE)."""
    from smplify3d_core.sim.pose_prior import simulator_pose_prior_path

    return simulator_pose_prior_path()


@pytest.fixture(scope="session")
def body_model_dir():
    from smplify3d_core.body.default_model import default_body_model_dir

    return default_body_model_dir()


@pytest.fixture(scope="session")
def smpl_body(body_model_dir):
    from smplify3d_core.body.model import SMPLBody

    return SMPLBody.from_path(body_model_dir)
