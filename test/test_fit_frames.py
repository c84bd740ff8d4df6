"""Fitted bodies moved into another frame (smplify3d_core.fit.frames) on the synthetic SMPL body."""
import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from smplify3d_core.fit.frames import transform_fit_result, transform_smpl_params


@dataclasses.dataclass
class _Bodies:
    """The FitResult fields the transform touches, plus one it must leave alone."""

    global_orient: torch.Tensor
    body_pose: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor
    joints: torch.Tensor
    vertices: torch.Tensor
    flags: list


def _rigid(seed):
    rng = np.random.default_rng(seed)
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rng.normal(size=3)).as_matrix()
    T[:3, 3] = rng.normal(scale=3.0, size=3)
    return T


def _bodies(body, seed=0, batch=3):
    g = torch.Generator().manual_seed(seed)
    params = dict(global_orient=torch.randn(batch, 3, generator=g, dtype=torch.float64),
                  body_pose=0.3 * torch.randn(batch, 69, generator=g, dtype=torch.float64),
                  betas=torch.randn(batch, 10, generator=g, dtype=torch.float64),
                  transl=torch.randn(batch, 3, generator=g, dtype=torch.float64) + torch.tensor([0.0, 0.0, 5.0],
                                                                                                 dtype=torch.float64))
    out = body(**params)
    rest = body(betas=params["betas"]).joints[:, 0]  # zero pose and translation: the pelvis is J0(betas)
    return _Bodies(**params, joints=out.joints, vertices=out.vertices, flags=[["x"]] * batch), rest


@pytest.fixture(scope="module")
def body64(body_model_dir):
    """The synthetic body (the ``smpl_body`` fixture's model files) in float64, so 1e-5 m checks test the math."""
    from smplify3d_core.body.model import SMPLBody

    return SMPLBody.from_path(body_model_dir, dtype=torch.float64)


def test_mesh_of_moved_parameters_is_the_moved_mesh(body64):
    bodies, rest = _bodies(body64)
    T = _rigid(1)
    moved = transform_fit_result(bodies, T, rest)
    mesh = body64(global_orient=moved.global_orient, body_pose=moved.body_pose, betas=moved.betas,
                  transl=moved.transl)
    R, t = torch.as_tensor(T[:3, :3]), torch.as_tensor(T[:3, 3])
    torch.testing.assert_close(moved.vertices, bodies.vertices @ R.T + t, atol=1e-9, rtol=0)
    torch.testing.assert_close(mesh.vertices, moved.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(mesh.joints, moved.joints, atol=1e-5, rtol=0)
    assert moved.flags is bodies.flags and moved.body_pose is bodies.body_pose
    assert not torch.equal(moved.vertices, bodies.vertices)  # the input was not changed in place


def test_pelvis_moves_rigidly_and_round_trip(body64):
    bodies, rest = _bodies(body64, seed=2)
    T = _rigid(3)
    orient, transl = transform_smpl_params(T, bodies.global_orient, bodies.transl, rest)
    pelvis = (rest + bodies.transl).numpy()
    np.testing.assert_allclose((rest + transl).numpy(), pelvis @ T[:3, :3].T + T[:3, 3], atol=1e-10)
    roots = Rotation.from_rotvec(orient.numpy()).as_matrix()
    np.testing.assert_allclose(roots, T[:3, :3] @ Rotation.from_rotvec(bodies.global_orient.numpy()).as_matrix(),
                               atol=1e-10)
    back_orient, back_transl = transform_smpl_params(np.linalg.inv(T), orient, transl, rest)
    np.testing.assert_allclose(Rotation.from_rotvec(back_orient.numpy()).as_matrix(),
                               Rotation.from_rotvec(bodies.global_orient.numpy()).as_matrix(), atol=1e-10)
    torch.testing.assert_close(back_transl, bodies.transl, atol=1e-10, rtol=0)


def test_float32_results_keep_their_dtype(body64):
    bodies, rest = _bodies(body64, seed=4, batch=2)
    as32 = dataclasses.replace(bodies, **{f: getattr(bodies, f).float() for f in
                                          ("global_orient", "body_pose", "betas", "transl", "joints", "vertices")})
    moved = transform_fit_result(as32, _rigid(5), rest.float())
    assert moved.vertices.dtype == moved.transl.dtype == moved.global_orient.dtype == torch.float32
    with pytest.raises(ValueError, match="4, 4"):
        transform_fit_result(as32, np.eye(3), rest.float())
