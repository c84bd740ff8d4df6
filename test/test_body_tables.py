"""Tables derived from the loaded model: COCO-17 / HumanM3 regressors, parts, uniform subset."""
import numpy as np
import pytest
import torch

from smplify3d_core.body.tables import (
    BODY_PARTS, COCO17_NAMES, HUMANM3_JOINT_NAMES, body_tables, farthest_point_order,
)


@pytest.fixture(scope="module")
def tables(smpl_body):
    return body_tables(smpl_body.data)


def test_regressors_are_normalised_and_sized(tables):
    assert tables.coco17_regressor.shape == (17, 6890) and tables.humanm3_regressor.shape == (15, 6890)
    np.testing.assert_allclose(tables.coco17_regressor.sum(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(tables.humanm3_regressor.sum(1), 1.0, atol=1e-9)


def test_coco_keypoints_sit_on_the_right_anatomy(smpl_body, tables):
    template = smpl_body.data.v_template
    kp = dict(zip(COCO17_NAMES, tables.coco17_regressor @ template))
    joints = smpl_body.data.J_regressor @ template
    # face points above the shoulders, nose in front of the eyes, left is +x
    assert kp["nose"][1] > kp["left_shoulder"][1] + 0.1
    assert kp["nose"][2] > kp["left_ear"][2] and kp["nose"][2] > kp["right_ear"][2]
    for side, sign in (("left", 1), ("right", -1)):
        for name in ("eye", "ear", "shoulder", "elbow", "wrist", "hip", "knee", "ankle"):
            assert sign * kp[f"{side}_{name}"][0] > 0, f"{side}_{name} on the wrong side"
    np.testing.assert_allclose(kp["left_knee"], joints[4], atol=1e-9)  # metres; coordinates cross 0
    assert kp["left_ankle"][1] < kp["left_knee"][1] < kp["left_hip"][1]


def test_humanm3_joints_are_smpl_joints(smpl_body, tables):
    template = smpl_body.data.v_template
    humanm3 = dict(zip(HUMANM3_JOINT_NAMES, tables.humanm3_regressor @ template))
    joints = smpl_body.data.J_regressor @ template
    # metres; the pelvis sits at x ~ 1e-16 m: an explicit atol, not a relative error of such values
    np.testing.assert_allclose(humanm3["pelvis"], joints[0], atol=1e-9)
    np.testing.assert_allclose(humanm3["head"], joints[15], atol=1e-9)
    np.testing.assert_allclose(humanm3["right_wrist"], joints[21], atol=1e-9)


def test_part_segmentation_follows_the_skinning(smpl_body, tables):
    template = smpl_body.data.v_template
    assert tables.vertex_part.shape == (6890,)
    assert set(np.unique(tables.vertex_part)) == set(range(len(BODY_PARTS))), "every part has vertices"
    left_hand = template[tables.part_vertices("l_hand")]
    right_foot = template[tables.part_vertices("r_foot")]
    head = template[tables.part_vertices("head")]
    assert left_hand[:, 0].min() > 0.55
    assert right_foot[:, 0].max() < 0 and right_foot[:, 1].max() < -0.95
    assert head[:, 1].min() > 0.15


def test_posing_a_part_moves_its_vertices(smpl_body, tables):
    pose = torch.zeros(1, 69)
    pose[0, (4 - 1) * 3] = 1.2  # left knee
    moved = (smpl_body(body_pose=pose).vertices - smpl_body().vertices)[0].norm(dim=-1).numpy()
    lower_leg = tables.part_vertices("l_lower_leg")
    assert np.median(moved[lower_leg]) > 0.05
    assert moved[tables.part_vertices("r_lower_leg")].max() < 1e-6


def test_uniform_subset_covers_the_body_evenly(smpl_body, tables):
    template = smpl_body.data.v_template
    subset = tables.uniform_subset
    assert len(subset) == 2000 and len(np.unique(subset)) == 2000
    # every vertex is within a few cm of the subset
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(template[subset]).query(template)
    assert distance.max() < 0.05
    np.testing.assert_array_equal(np.sort(farthest_point_order(template, 2000)), subset)


def test_user_regressor_file(tmp_path, smpl_body):
    regressor = np.full((17, 6890), 1.0 / 6890)
    np.save(tmp_path / "coco.npy", regressor)
    tables = body_tables(smpl_body.data, coco17_regressor_path=str(tmp_path / "coco.npy"))
    np.testing.assert_array_equal(tables.coco17_regressor, regressor)
    np.save(tmp_path / "bad.npy", regressor[:15])
    with pytest.raises(ValueError, match=r"\(17, 6890\)"):
        body_tables(smpl_body.data, coco17_regressor_path=str(tmp_path / "bad.npy"))
    with pytest.raises(FileNotFoundError):
        body_tables(smpl_body.data, coco17_regressor_path=str(tmp_path / "missing.npy"))


def test_a_coarse_subset_is_a_spread_out_part_of_the_uniform_subset(smpl_body, tables):
    """Every prefix of farthest-point sampling is itself a uniform sample, only sparser."""
    from scipy.spatial import cKDTree

    template = smpl_body.data.v_template
    coarse = tables.coarse_subset(500)
    assert len(coarse) == 500 and np.all(np.diff(coarse) > 0)
    assert set(coarse.tolist()) <= set(tables.uniform_subset.tolist())
    spacing = {n: cKDTree(template[tables.coarse_subset(n)]).query(template)[0].max() for n in (500, 2000)}
    assert spacing[2000] < spacing[500] < 0.1, spacing
    np.testing.assert_array_equal(tables.coarse_subset(5000), tables.uniform_subset)
    with pytest.raises(ValueError, match="at least one vertex"):
        tables.coarse_subset(0)
