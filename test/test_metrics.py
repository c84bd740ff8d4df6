"""Tests for smplify3d_core.eval.metrics (hand-computed values, known transforms)."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from smplify3d_core.eval import metrics as M


def _three_joints():
    target = np.array([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    pred = target.copy()
    pred[0, 1] += [0.0, 0.3, 0.4]  # error 0.5
    pred[0, 2] += [0.0, 0.0, 0.2]  # error 0.2
    return pred, target


def test_mpjpe_hand_values():
    pred, target = _three_joints()
    np.testing.assert_allclose(M.mpjpe(pred, target), [(0.0 + 0.5 + 0.2) / 3])
    np.testing.assert_allclose(M.mpjpe(pred, target, root_index=None), [0.7 / 3])


def test_mpjpe_root_alignment_removes_translation():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(4, 24, 3))
    pred = target + np.array([0.3, -1.0, 2.0])
    np.testing.assert_allclose(M.mpjpe(pred, target), 0.0, atol=1e-12)
    np.testing.assert_allclose(M.mpjpe(pred, target, root_index=[1, 2]), 0.0, atol=1e-12)
    np.testing.assert_allclose(M.mpjpe(pred, target, root_index=None), np.sqrt(0.09 + 1 + 4))


def test_mpjpe_root_alignment_uses_root_of_each():
    pred, target = _three_joints()
    pred = pred + 5.0
    # root joint 0 unchanged relative to others -> same as unshifted
    np.testing.assert_allclose(M.mpjpe(pred, target, root_index=0), [0.7 / 3])
    # mean of joints 1 and 2 as root: pred root shifted by (0, .15, .3)
    shift = np.array([0.0, 0.15, 0.3])
    errs = [np.linalg.norm(-shift), np.linalg.norm([0, 0.3, 0.4] - shift), np.linalg.norm([0, 0, 0.2] - shift)]
    np.testing.assert_allclose(M.mpjpe(pred, target, root_index=[1, 2]), [np.mean(errs)])


def test_procrustes_recovers_similarity():
    rng = np.random.default_rng(3)
    target = rng.normal(size=(3, 30, 3))
    rot = Rotation.random(3, random_state=7).as_matrix()
    t = np.array([[1.0, -2.0, 0.5], [0, 0, 3], [-1, 1, 1]])
    pred = 1.7 * np.einsum("bij,bnj->bni", rot, target) + t[:, None]
    s, R, tt = M.procrustes_transform(pred, target)
    np.testing.assert_allclose(s, 1 / 1.7, rtol=1e-10)
    np.testing.assert_allclose(R, np.transpose(rot, (0, 2, 1)), atol=1e-10)
    np.testing.assert_allclose(M.procrustes_align(pred, target), target, atol=1e-10)
    np.testing.assert_allclose(M.pa_mpjpe(pred, target), 0.0, atol=1e-10)
    np.testing.assert_allclose(M.pa_pve(pred, target), 0.0, atol=1e-10)
    # forward direction: transform maps pred onto target as s R p + t
    aligned = s[:, None, None] * pred @ np.transpose(R, (0, 2, 1)) + tt[:, None]
    np.testing.assert_allclose(aligned, target, atol=1e-10)
    # MPJPE (no scale/rotation alignment) is clearly not zero
    assert np.all(M.mpjpe(pred, target) > 0.1)


def test_procrustes_reflection_gives_proper_rotation():
    rng = np.random.default_rng(5)
    target = rng.normal(size=(2, 20, 3))
    pred = target * np.array([-1.0, 1.0, 1.0])  # mirror image
    s, R, _ = M.procrustes_transform(pred, target)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-10)
    np.testing.assert_allclose(R @ np.transpose(R, (0, 2, 1)), np.broadcast_to(np.eye(3), R.shape), atol=1e-10)
    assert np.all(s > 0)
    # a mirror cannot be undone by a rotation: error stays > 0
    assert np.all(M.pa_mpjpe(pred, target) > 1e-3)
    # and the fix is optimal: no random proper rotation does better
    aligned = M.procrustes_align(pred, target)
    best = np.sum((aligned - target) ** 2, axis=(1, 2))
    for seed in range(20):
        Rr = Rotation.random(random_state=seed).as_matrix()
        for b in range(2):
            x = pred[b] - pred[b].mean(0)
            y = target[b] - target[b].mean(0)
            sr = max(0.0, np.sum((x @ Rr.T) * y) / np.sum(x * x))  # s < 0 would be a reflection
            assert np.sum((sr * x @ Rr.T - y) ** 2) >= best[b] - 1e-9


def test_planar_points_procrustes():
    # coplanar points: SVD has a zero singular value; must still find the rotation
    rng = np.random.default_rng(2)
    target = np.concatenate([rng.normal(size=(1, 10, 2)), np.zeros((1, 10, 1))], axis=2)
    rot = Rotation.from_euler("xyz", [0.3, -0.5, 1.0]).as_matrix()
    pred = 0.5 * target @ rot.T + 3.0
    np.testing.assert_allclose(M.pa_mpjpe(pred, target), 0.0, atol=1e-10)


def test_pve_root_aligned_and_unaligned():
    target = np.zeros((2, 4, 3))
    pred = np.zeros((2, 4, 3))
    pred[:, :, 0] = 0.1
    pred[1, 0, 1] = 0.3
    np.testing.assert_allclose(M.pve(pred, target), [0.1, (3 * 0.1 + np.hypot(0.1, 0.3)) / 4])
    roots_p = np.full((2, 3), 0.0)
    roots_p[:, 0] = 0.1
    np.testing.assert_allclose(M.pve(pred, target, roots_p, np.zeros((2, 3))), [0.0, 0.3 / 4], atol=1e-12)
    with pytest.raises(ValueError, match="both"):
        M.pve(pred, target, roots_p, None)
    with pytest.raises(ValueError, match="pred_root"):
        M.pve(pred, target, np.zeros((3, 3)), np.zeros((2, 3)))


def test_pck_and_auc_hand_values():
    target = np.zeros((1, 4, 3))
    pred = np.zeros((1, 4, 3))
    pred[0, 1, 0] = 0.03   # within 50 mm
    pred[0, 2, 1] = 0.1025  # outside 50 mm, inside 200 mm
    pred[0, 3, 2] = 0.5    # never
    np.testing.assert_allclose(M.pck(pred, target, 0.05), [0.5])
    np.testing.assert_allclose(M.pck(pred, target, 0.2), [0.75])
    # continuous area: root 1*0.2, joint1 (0.2-0.03), joint2 (0.2-0.1025), joint3 0
    expected = (0.2 + 0.17 + 0.0975) / 4 / 0.2
    # joint1 at 0.03 lies between grid points 0.025 and 0.03 -> exactly on grid 0.03;
    # trapezoid on a 5 mm grid: joint1 contributes 0.17 + 0.0025 (half a step)
    expected_trapz = (0.2 + 0.1725 + 0.0975) / 4 / 0.2
    np.testing.assert_allclose(M.auc(pred, target), [expected_trapz], rtol=1e-9)
    assert abs(M.auc(pred, target, steps=4001)[0] - expected) < 1e-4


def test_auc_perfect_and_worst():
    target = np.random.default_rng(0).normal(size=(2, 5, 3))
    np.testing.assert_allclose(M.auc(target, target), 1.0)
    np.testing.assert_allclose(M.pck(target, target), 1.0)
    far = target + np.array([[0, 0, 0]] + [[10.0, 0, 0]] * 4)
    np.testing.assert_allclose(M.auc(far, target), 0.2)  # only the root joint
    np.testing.assert_allclose(M.auc(far, target, root_index=None), 0.2)


def _tetra():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)[None]
    faces = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    return verts, faces


def test_mpere():
    verts, faces = _tetra()
    assert M.mesh_edges(faces).shape == (6, 2)
    np.testing.assert_allclose(M.mpere(verts, verts, faces), [0.0], atol=1e-12)
    np.testing.assert_allclose(M.mpere(1.1 * verts, verts, faces), [0.1], rtol=1e-12)
    rot = Rotation.from_euler("z", 0.7).as_matrix()
    np.testing.assert_allclose(M.mpere(verts @ rot.T + 2.0, verts, faces), [0.0], atol=1e-12)
    # stretch one vertex: only its 3 edges change
    moved = verts.copy()
    moved[0, 3, 2] = 2.0  # edges 0-3: 1 -> 2 ; 1-3, 2-3: sqrt2 -> sqrt5
    expected = (1.0 + 2 * (np.sqrt(5) - np.sqrt(2)) / np.sqrt(2)) / 6
    np.testing.assert_allclose(M.mpere(moved, verts, faces), [expected])
    with pytest.raises(ValueError, match="faces"):
        M.mpere(verts, verts, np.array([[0, 1, 9]]))


def test_score_against_truth_units_and_keys():
    rng = np.random.default_rng(1)
    verts, faces = _tetra()
    gt_v = np.repeat(verts, 2, axis=0)
    gt_j = rng.normal(size=(2, 3, 3))
    pred_v = gt_v + 0.01  # 1 cm translation
    pred_j = gt_j + 0.01
    out = M.score_against_truth(pred_v, pred_j, gt_v, gt_j, faces=faces)
    assert set(out) == {"mpjpe_mm", "pa_mpjpe_mm", "pelvis_error_mm", "pve_mm", "pa_pve_mm", "pck50", "auc_0_200",
                        "mpere"}
    for v in out.values():
        assert v.shape == (2,)
    # a translation: nothing after aligning the pelvises, the full 1 cm offset in the pelvis error
    np.testing.assert_allclose(out["mpjpe_mm"], 0.0, atol=1e-9)
    np.testing.assert_allclose(out["pve_mm"], 0.0, atol=1e-9)
    np.testing.assert_allclose(out["mpere"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["pck50"], 1.0)
    np.testing.assert_allclose(out["pelvis_error_mm"], 10 * np.sqrt(3), rtol=1e-9, atol=1e-9)
    # without vertices: the joint metrics only, the same values
    joints_only = M.score_against_truth(None, pred_j, None, gt_j)
    assert set(joints_only) == {"mpjpe_mm", "pa_mpjpe_mm", "pelvis_error_mm", "pck50", "auc_0_200"}
    for key, value in joints_only.items():
        np.testing.assert_allclose(value, out[key], atol=1e-12)
    # another root joint: the pelvis error is read there, MPJPE aligned there
    bent = pred_j.copy()
    bent[:, 0] += np.array([0.0, 0.1, 0.0])  # move joint 0 by 10 cm
    moved_root = M.score_against_truth(None, bent, None, gt_j, root_index=1)
    np.testing.assert_allclose(moved_root["pelvis_error_mm"], 10 * np.sqrt(3), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(moved_root["mpjpe_mm"], 100.0 / 3, rtol=1e-9, atol=1e-9)


def test_score_against_truth_matches_the_single_metrics():
    rng = np.random.default_rng(5)
    verts, faces = _tetra()
    gt_v = np.repeat(verts, 3, axis=0) + rng.normal(0, 0.01, size=(3, 4, 3))
    gt_j = rng.normal(size=(3, 6, 3))
    pred_v, pred_j = gt_v + rng.normal(0, 0.02, size=gt_v.shape), gt_j + rng.normal(0, 0.03, size=gt_j.shape)
    out = M.score_against_truth(pred_v, pred_j, gt_v, gt_j, faces)
    np.testing.assert_allclose(out["mpjpe_mm"], 1000 * M.mpjpe(pred_j, gt_j, 0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(out["pa_mpjpe_mm"], 1000 * M.pa_mpjpe(pred_j, gt_j), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(out["pve_mm"], 1000 * M.pve(pred_v, gt_v, pred_j[:, 0], gt_j[:, 0]), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(out["pelvis_error_mm"], 1000 * np.linalg.norm(pred_j[:, 0] - gt_j[:, 0], axis=1),
                               rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(out["mpere"], M.mpere(pred_v, gt_v, faces), rtol=1e-12, atol=1e-9)


def test_bad_shapes_and_nan():
    a = np.zeros((2, 5, 3))
    with pytest.raises(ValueError, match=r"pred.*\(B, N, 3\)"):
        M.mpjpe(np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="same shape"):
        M.mpjpe(a, np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="root_index"):
        M.mpjpe(a, a, root_index=7)
    bad = a.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="target"):
        M.mpjpe(a, bad)
    with pytest.raises(ValueError, match="pred_verts"):
        M.pve(bad, a)
    with pytest.raises(ValueError, match="truth_joints"):
        M.score_against_truth(a, a, a, bad)
    with pytest.raises(ValueError, match="truth_vertices"):
        M.score_against_truth(a, a, None, a)
    with pytest.raises(ValueError, match="root_index"):
        M.score_against_truth(None, a, None, a, root_index=5)
