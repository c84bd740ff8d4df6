"""Nearest neighbours, chamfer, ICP and the loss terms, against references and hand values."""
import numpy as np
import open3d as o3d
import pytest
import torch

from smplify3d_core.fit.icp import apply_rigid_to_smpl, rigid_icp
from smplify3d_core.fit.losses import occluded_part_deviation, reprojection_loss
from smplify3d_core.fit.visibility import keypoint_visibility, occluded_joint_weights
from smplify3d_core.body.tables import BODY_PARTS
from smplify3d_core.geometry.nearest import (
    BatchedKDTree, FixedPointsNearest, chamfer_distance, nearest_indices, pad_point_sets, set_search_threads,
)
from smplify3d_core.geometry.rotations import axis_angle_to_matrix


def _random_sets(seed=0):
    rng = np.random.default_rng(seed)
    sets_a = [rng.normal(size=(n, 3)) for n in (50, 120, 7)]
    sets_b = [rng.normal(size=(n, 3)) for n in (80, 30, 200)]
    return pad_point_sets(sets_a, dtype=torch.float64), pad_point_sets(sets_b, dtype=torch.float64), sets_a, sets_b


def test_nearest_neighbours_kdtree_and_brute_force_equal_reference():
    (a, a_mask), (b, b_mask), sets_a, sets_b = _random_sets()
    for method in ("kdtree", "brute"):
        index = nearest_indices(a, b, b_mask, method)
        for p in range(3):
            reference = np.linalg.norm(sets_a[p][:, None] - sets_b[p][None], axis=-1).argmin(1)
            np.testing.assert_array_equal(index[p, : len(sets_a[p])].numpy(), reference)


def test_chamfer_equals_brute_force_and_has_gradients():
    (a, a_mask), (b, b_mask), sets_a, sets_b = _random_sets(1)
    a.requires_grad_(True)
    for method in ("kdtree", "brute"):
        value = chamfer_distance(a, a_mask, b, b_mask, method)
        for p in range(3):
            d = np.linalg.norm(sets_a[p][:, None] - sets_b[p][None], axis=-1) ** 2
            assert value[p].item() == pytest.approx(d.min(1).mean() + d.min(0).mean(), rel=1e-9)
    value.sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad[a_mask].abs().sum() > 0
    assert a.grad[~a_mask].abs().sum() == 0


def test_chamfer_gradients_match_finite_differences_for_both_point_sets():
    """The chamfer term's hand-written backward (offsets scattered onto the matched entries) agrees with
    finite differences for the surface and the points, padded entries and a person without points included."""
    (a, a_mask), (b, b_mask), _, _ = _random_sets(2)
    b_mask[1] = False  # a person without points: value and gradients 0
    a.requires_grad_(True)
    b.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s, p: chamfer_distance(s, a_mask, p, b_mask, "brute"), (a, b),
                                    eps=1e-6, atol=1e-6)
    chamfer_distance(a, a_mask, b, b_mask, "kdtree").sum().backward()
    assert a.grad[1].abs().sum() == 0 and b.grad[1].abs().sum() == 0 and a.grad[0].abs().sum() > 0


def test_chamfer_of_a_person_without_points_is_zero_and_nan_points_are_masked():
    padded, mask = pad_point_sets([np.zeros((0, 3)), np.array([[0, 0, 1.0], [np.nan, 0, 0]])], dtype=torch.float64)
    assert mask.tolist() == [[False, False], [True, False]]
    surface, surface_mask = pad_point_sets([np.ones((3, 3)), np.zeros((1, 3))], dtype=torch.float64)
    value = chamfer_distance(surface, surface_mask, padded, mask)
    assert value[0] == 0 and value[1] == pytest.approx(2.0)


def _known_transform(seed):
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=3)
    rotation = axis_angle_to_matrix(torch.as_tensor(axis / np.linalg.norm(axis) * 0.25)).numpy()
    translation = rng.normal(size=3) * 0.3
    return rotation, translation


def _body_like_cloud(rng, n=400):
    """An elongated, asymmetric blob (so the registration is well-posed)."""
    return rng.normal(size=(n, 3)) * [0.15, 0.8, 0.1] + np.where(rng.random((n, 1)) < 0.2, [0.3, 0.4, 0.0], 0.0)


def test_icp_recovers_a_known_rigid_transform_for_every_person():
    rng = np.random.default_rng(3)
    sources, targets, truths = [], [], []
    for seed in range(3):
        source = _body_like_cloud(rng)
        rotation, translation = _known_transform(seed)
        sources.append(source)
        targets.append(source @ rotation.T + translation)
        truths.append((rotation, translation))
    src, src_mask = pad_point_sets(sources, dtype=torch.float64)
    dst, dst_mask = pad_point_sets(targets, dtype=torch.float64)
    result = rigid_icp(src, src_mask, dst, dst_mask, iterations=100)
    for p, (rotation, translation) in enumerate(truths):
        np.testing.assert_allclose(result.rotation[p].numpy(), rotation, atol=1e-4)
        np.testing.assert_allclose(result.translation[p].numpy(), translation, atol=1e-4)
    assert result.rmse.max() < 1e-5


def test_icp_agrees_with_open3d():
    rng = np.random.default_rng(4)
    source = _body_like_cloud(rng, 500)
    rotation, translation = _known_transform(9)
    target = (source @ rotation.T + translation)[::2] + rng.normal(scale=0.01, size=(250, 3))
    src, src_mask = pad_point_sets([source], dtype=torch.float64)
    dst, dst_mask = pad_point_sets([target], dtype=torch.float64)
    ours = rigid_icp(src, src_mask, dst, dst_mask, iterations=100, init_from_bbox=False, tolerance=1e-10)
    pcd_s = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(source))
    pcd_t = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(target))
    reference = o3d.pipelines.registration.registration_icp(
        pcd_s, pcd_t, 10.0, np.eye(4), o3d.pipelines.registration.TransformationEstimationPointToPoint(),
        o3d.pipelines.registration.ICPConvergenceCriteria(1e-12, 1e-12, 100),
    ).transformation
    np.testing.assert_allclose(ours.rotation[0].numpy(), reference[:3, :3], atol=2e-3)
    np.testing.assert_allclose(ours.translation[0].numpy(), reference[:3, 3], atol=2e-3)


def test_icp_translation_only_and_empty_person():
    rng = np.random.default_rng(5)
    source = _body_like_cloud(rng)
    src, src_mask = pad_point_sets([source, np.zeros((0, 3))], dtype=torch.float64)
    dst, dst_mask = pad_point_sets([source + [0.5, -0.2, 1.0], np.ones((4, 3))], dtype=torch.float64)
    result = rigid_icp(src, src_mask, dst, dst_mask, with_rotation=False)
    np.testing.assert_allclose(result.rotation[0].numpy(), np.eye(3), atol=1e-12)
    np.testing.assert_allclose(result.translation[0].numpy(), [0.5, -0.2, 1.0], atol=1e-6)
    np.testing.assert_allclose(result.translation[1].numpy(), 0.0, atol=1e-12)


def test_apply_rigid_to_smpl_moves_points_like_the_transform(smpl_body):
    generator = torch.Generator().manual_seed(0)
    orient = torch.randn(2, 3, generator=generator, dtype=torch.float64) * 0.5
    transl = torch.randn(2, 3, generator=generator, dtype=torch.float64)
    betas = torch.randn(2, 10, generator=generator, dtype=torch.float64)
    body = smpl_body.double()
    before = body(global_orient=orient, betas=betas, transl=transl).vertices
    rotation = axis_angle_to_matrix(torch.randn(2, 3, generator=generator, dtype=torch.float64) * 0.3)
    translation = torch.randn(2, 3, generator=generator, dtype=torch.float64)
    root = body(betas=betas).joints[:, 0]
    new_orient, new_transl = apply_rigid_to_smpl(orient, transl, root, rotation, translation)
    after = body(global_orient=new_orient, betas=betas, transl=new_transl).vertices
    smpl_body.float()
    torch.testing.assert_close(after, before @ rotation.transpose(1, 2) + translation[:, None])


def test_reprojection_loss_hand_value_and_hip_alignment():
    K = torch.tensor([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])[None]
    joints = torch.zeros(1, 17, 3)
    joints[..., 2] = 2.0  # all at the principal point
    keypoints = torch.full((1, 17, 2), 0.0)
    keypoints[..., 0], keypoints[..., 1] = 50.0, 40.0
    keypoints[0, 16] = torch.tensor([53.0, 44.0])  # right ankle 3 px / 4 px off
    confidence = torch.zeros(1, 17)
    confidence[0, 16] = 0.5
    sigma = 10.0
    expected = 0.25 * sum(sigma ** 2 * r ** 2 / (sigma ** 2 + r ** 2) for r in (3.0, 4.0))
    assert reprojection_loss(joints, keypoints, confidence, K, sigma, False).item() == pytest.approx(expected, rel=1e-5)
    # a pure image shift is removed by the hip alignment
    shifted = keypoints + torch.tensor([7.0, -5.0])
    confidence[:] = 1.0
    assert reprojection_loss(joints, shifted, confidence, K, sigma, True).item() == pytest.approx(
        reprojection_loss(joints, keypoints, confidence, K, sigma, False).item(), rel=1e-5)


def test_occluded_part_deviation_changes_only_named_joints():
    init = torch.zeros(1, 69)
    pose = init.clone()
    pose[0, (19 - 1) * 3 + 1] = 0.8  # right elbow (SMPL 19): drives r_lower_arm
    weights = torch.zeros(1, 23)
    weights[0, 18] = 1.0  # r_lower_arm -> SMPL 19 -> body-pose joint 18
    expected = 1 - np.cos(0.4) ** 2
    assert occluded_part_deviation(pose, init, weights).item() == pytest.approx(expected, rel=1e-5)
    weights_other = torch.zeros(1, 23)
    weights_other[0, 17] = 1.0  # the left elbow: untouched joint, no cost
    assert occluded_part_deviation(pose, init, weights_other).item() == pytest.approx(0.0, abs=1e-7)
    # invisible right lower arm maps to SMPL joint 19, i.e. body-pose slot 18 (the research code used 19)
    image_parts = torch.ones(1, len(BODY_PARTS), dtype=torch.bool)
    image_parts[0, BODY_PARTS.index("r_lower_arm")] = False
    joint_weights = occluded_joint_weights(image_parts)
    assert torch.nonzero(joint_weights[0]).flatten().tolist() == [18]


def test_visibility_threshold_and_parts():
    confidence = torch.full((2, 17), 0.9)
    confidence[0, 10] = 0.2  # right wrist weak
    confidence[1] = 0.3      # a person whose best keypoint is 0.3: thr drops to 0.3
    lidar = torch.ones(2, 17)
    lidar[0, 15] = 0.0       # left ankle not hit by the LiDAR
    visibility = keypoint_visibility(confidence, lidar, 0.6)
    names = BODY_PARTS
    assert not visibility.image_parts[0, names.index("r_hand")]
    assert not visibility.image_parts[0, names.index("r_lower_arm")]
    assert visibility.image_parts[0, names.index("r_upper_arm")]
    assert not visibility.lidar_parts[0, names.index("l_foot")] and not visibility.lidar_parts[0, names.index("l_lower_leg")]
    assert visibility.lidar_parts[0, names.index("r_lower_leg")]
    assert visibility.image_parts[1].all()


def test_icp_stops_early_for_an_aligned_person_and_still_aligns_the_other():
    """Each person's ICP ends when its RMSE stops changing: an already aligned person takes a
    couple of updates while the other, moved by a known transform, is still recovered."""
    rng = np.random.default_rng(6)
    aligned, moved = _body_like_cloud(rng), _body_like_cloud(rng)
    rotation, translation = _known_transform(2)
    src, src_mask = pad_point_sets([aligned, moved], dtype=torch.float64)
    dst, dst_mask = pad_point_sets([aligned, moved @ rotation.T + translation], dtype=torch.float64)
    result = rigid_icp(src, src_mask, dst, dst_mask, iterations=100, tolerance=1e-6)
    assert int(result.person_iterations[0]) <= 2
    assert int(result.person_iterations[1]) > int(result.person_iterations[0])
    assert result.iterations < 100  # the loop ends once both have converged
    np.testing.assert_allclose(result.rotation[0].numpy(), np.eye(3), atol=1e-9)
    np.testing.assert_allclose(result.translation[0].numpy(), 0.0, atol=1e-9)
    np.testing.assert_allclose(result.rotation[1].numpy(), rotation, atol=1e-4)
    np.testing.assert_allclose(result.translation[1].numpy(), translation, atol=1e-4)
    # the fit hands ICP the index it keeps over the LiDAR points: the same alignment comes out
    kept = rigid_icp(src, src_mask, dst, dst_mask, iterations=100, tolerance=1e-6,
                     target_index=FixedPointsNearest(dst, dst_mask))
    assert kept.iterations == result.iterations
    np.testing.assert_allclose(kept.rotation.numpy(), result.rotation.numpy(), atol=1e-12)
    np.testing.assert_allclose(kept.translation.numpy(), result.translation.numpy(), atol=1e-12)


def test_fixed_points_index_gives_the_brute_force_neighbours_of_moving_queries():
    """The index kept across optimizer steps answers like a fresh search at every step while
    searching only the query points that moved too far from their last search."""
    generator = torch.Generator().manual_seed(7)
    points = torch.randn(3, 60, 3, generator=generator, dtype=torch.float64)
    points_mask = torch.ones(3, 60, dtype=torch.bool)
    points_mask[1, 40:] = False
    points_mask[2, 2:] = False  # fewer points than candidates
    query = torch.randn(3, 200, 3, generator=generator, dtype=torch.float64)
    query_mask = torch.rand(3, 200, generator=generator) > 0.2
    index = FixedPointsNearest(points, points_mask)
    for step in range(12):
        query = query + 0.01 * torch.randn(query.shape, generator=generator, dtype=torch.float64)
        if step == 6:
            query_mask = torch.rand(3, 200, generator=generator) > 0.2  # the mask may change too
        found = index.query(query, query_mask)
        expected = nearest_indices(query, points, points_mask, method="brute")
        assert torch.equal(found[query_mask], expected[query_mask])
    assert index.searches < 0.5 * 12 * int(query_mask.sum())


def test_one_tree_for_the_batch_answers_each_person_from_its_own_points():
    """The batch shares one KD-tree (persons moved apart); every answer is still the person's own nearest
    point, also for a query far beyond the reach of the separation and for a person with one point."""
    generator = torch.Generator().manual_seed(8)
    points = torch.randn(3, 40, 3, generator=generator, dtype=torch.float64) * 5.0
    points_mask = torch.ones(3, 40, dtype=torch.bool)
    points_mask[1, 1:] = False  # one point
    points_mask[2, :] = False  # none
    query = torch.randn(3, 30, 3, generator=generator, dtype=torch.float64) * 5.0
    query[0, 0] = torch.tensor([2.0e5, -3.0e5, 1.0e5], dtype=torch.float64)  # far beyond the reach
    query[1, 3] = torch.tensor([1.0e6, 0.0, 0.0], dtype=torch.float64)
    tree = BatchedKDTree(points, points_mask)
    expected = nearest_indices(query, points, points_mask, method="brute")
    found = tree.query(query)
    assert torch.equal(found[:2], expected[:2]) and torch.equal(found[2], torch.zeros(30, dtype=torch.long))
    broken = query.clone()
    broken[0, 5] = float("nan")  # a non-finite query (a diverged person) gets an index, not an error
    assert 0 <= int(tree.query(broken)[0, 5]) < 40
    rows, ids, distances = tree.query_candidates(query, torch.ones(3, 30, dtype=torch.bool), 4)
    assert rows.tolist() == list(range(60))  # the person without points is not searched
    assert torch.equal(ids[:30, 0], expected[0]) and torch.equal(ids[30:], torch.zeros(30, 4, dtype=torch.long))
    assert torch.isinf(distances[30:, 1:]).all() and torch.isfinite(distances[:30]).all()
    assert bool((distances[:30, 1:] >= distances[:30, :-1]).all())  # nearest first


def test_the_search_threads_leave_the_answers_unchanged():
    """``smplify3d --threads`` also sets the KD-tree's own OpenMP threads; the answers do not depend on them."""
    generator = torch.Generator().manual_seed(10)
    points = torch.randn(4, 500, 3, generator=generator, dtype=torch.float64)
    query = torch.randn(4, 3000, 3, generator=generator, dtype=torch.float64)
    mask = torch.ones(4, 500, dtype=torch.bool)
    answers = []
    for threads in (2, 1):
        assert set_search_threads(threads)  # the runtime that pykdtree searches with was found
        answers.append(BatchedKDTree(points, mask).query_candidates(query, torch.ones(4, 3000, dtype=torch.bool), 4))
    for first, second in zip(*answers):
        assert torch.equal(first, second)


def test_visible_surface_normals_are_the_area_weighted_normals_of_the_whole_mesh(smpl_body):
    """The subset's normals come from the faces around it only; they are the whole mesh's area-weighted
    vertex normals at the subset (numpy reference), and the sensor-facing test follows them."""
    from smplify3d_core.body.tables import body_tables
    from smplify3d_core.fit.visibility import VisibleSurface

    surface = VisibleSurface(body_tables(smpl_body.data), smpl_body.faces)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        vertices = smpl_body(body_pose=0.4 * torch.randn(2, 69, generator=generator),
                             betas=torch.randn(2, 10, generator=generator)).vertices
    faces = np.asarray(smpl_body.faces)
    for b in range(2):
        mesh = vertices[b].double().numpy()
        cross = np.cross(mesh[faces[:, 1]] - mesh[faces[:, 0]], mesh[faces[:, 2]] - mesh[faces[:, 0]])
        summed = np.zeros_like(mesh)
        for corner in range(3):
            np.add.at(summed, faces[:, corner], cross)
        expected = (summed / np.linalg.norm(summed, axis=1, keepdims=True))[surface.subset.numpy()]
        np.testing.assert_allclose(surface.subset_normals(vertices)[b].double().numpy(), expected, rtol=0, atol=1e-5)
    everything = torch.ones(2, len(BODY_PARTS), dtype=torch.bool)
    far_front = torch.tensor([[0.0, 0.0, 100.0]]).expand(2, 3)  # the sensor far along +z
    facing = surface.mask(vertices, everything, far_front, 0.0)
    normals_z = surface.subset_normals(vertices)[..., 2]
    clear = normals_z.abs() > 0.05  # the sensor is 100 m away: its direction is +z within 0.02 rad
    assert torch.equal(facing[clear], (normals_z > 0)[clear])
