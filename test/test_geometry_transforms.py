"""Rigid transforms of points: ``transform_points`` and ``rigid_inverse``."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from smplify3d_core.geometry.transforms import rigid_inverse, transform_points


def _rigid(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rng.normal(size=3)).as_matrix()
    T[:3, 3] = rng.normal(0.0, 2.0, size=3)
    return T


def test_transform_points_matches_homogeneous_product():
    T = _rigid(0)
    points = np.random.default_rng(1).normal(size=(50, 3))
    homogeneous = np.column_stack([points, np.ones(len(points))]) @ T.T
    out = transform_points(T, points)
    assert out.shape == (50, 3) and out.dtype == np.float64
    np.testing.assert_allclose(out, homogeneous[:, :3], atol=1e-12)
    # float32 input and a flat list are read as (N, 3)
    np.testing.assert_allclose(transform_points(T, points.astype(np.float32).ravel().tolist()), out, atol=1e-5)
    assert transform_points(T, np.zeros((0, 3))).shape == (0, 3)


def test_rigid_inverse_undoes_the_transform_and_composes():
    A, B = _rigid(2), _rigid(3)
    points = np.random.default_rng(4).normal(size=(20, 3))
    np.testing.assert_allclose(rigid_inverse(A) @ A, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(transform_points(rigid_inverse(A), transform_points(A, points)), points, atol=1e-12)
    np.testing.assert_allclose(rigid_inverse(A @ B), rigid_inverse(B) @ rigid_inverse(A), atol=1e-12)
    np.testing.assert_allclose(rigid_inverse(A), np.linalg.inv(A), atol=1e-12)


def test_wrong_matrix_shape_is_named():
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(3, 3\)"):
        transform_points(np.eye(3), np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        rigid_inverse(np.eye(4)[:3])
