"""LiDAR person proposals, detector boxes and per-person point crops on simulated scenes.

Ground truth: ``SimulatedScene.cloud_labels`` (person index, −1 ground, −2 background objects) and
each person's true projected box ``frame.persons[i].bbox_xywh`` (tight box of the projected mesh,
clipped to the image). Checks apply to persons with ≥ 100 LiDAR points, with two honest
restrictions, each counted in the assertion messages:

* proposal recall: a person whose own LiDAR points cannot give a box with IoU ≥ 0.5 against its
  true box (the rest of the body is hidden behind a nearer person) is not required;
* crops from proposal boxes: the proposal box is the person's projected points grown by 10 %;
  when the person is mostly hidden (≥ 5 keypoints occluded) by a nearer person, that nearer
  person fills the same box and the box alone cannot tell them apart — such persons are skipped
  (their proposal's own ``point_ids`` are still checked).
"""
import numpy as np
import pytest

from smplify3d_core.geometry.clustering import (
    GroundPlane,
    cluster_statistics,
    euclidean_clusters,
    fit_ground_plane,
    merge_stacked_clusters,
    voxel_downsample,
)
from smplify3d_core.geometry.visibility import keypoint_lidar_visibility
from smplify3d_core.perception.crops import (
    boxes_from_detector,
    crop_person_points,
    crop_persons_points,
    lidar_visibility_for_keypoints,
)
from smplify3d_core.perception.proposal_config import ProposalConfig
from smplify3d_core.perception.proposals import propose_persons
from smplify3d_core.geometry.transforms import transform_points
from smplify3d_core.types import PinholeCamera

SEEDS = (0, 1, 2, 3, 4)
PRESETS = ("humanm3", "sloper4d")
MIN_POINTS = 100


def box_iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def recall_contamination(ids, person_ids):
    """Fraction of the person's points in the crop; fraction of the crop that is not the person."""
    inter = np.isin(ids, person_ids).sum()
    return inter / len(person_ids), (len(ids) - inter) / max(len(ids), 1)


@pytest.fixture(scope="module")
def scenes(smpl_body):
    from smplify3d_core.sim.scene import simulate_scene

    return [simulate_scene(smpl_body, persons=4, preset=p, seed=s) for p in PRESETS for s in SEEDS]


@pytest.fixture(scope="module")
def results(scenes):
    """Per scene: (scene, proposals, the camera-frame cloud)."""
    out = []
    for scene in scenes:
        frame = scene.frame
        proposals = propose_persons(frame.cloud_lidar, frame.T_cam_lidar, frame.camera)
        out.append((scene, proposals, transform_points(frame.T_cam_lidar, frame.cloud_lidar)))
    return out


def lidar_box(scene, i):
    """Tight box of person i's own projected LiDAR points (clipped), or None."""
    camera = scene.frame.camera
    uv = camera.project(scene.frame.persons[i].points)
    uv = uv[np.all(np.isfinite(uv), axis=1)]
    if len(uv) == 0:
        return None
    x0, y0 = np.clip(uv.min(axis=0), 0, [camera.width, camera.height])
    x1, y1 = np.clip(uv.max(axis=0), 0, [camera.width, camera.height])
    return np.array([x0, y0, x1 - x0, y1 - y0])


def proposal_owner(scene, proposal):
    labels = scene.cloud_labels[proposal.point_ids]
    persons = labels[labels >= 0]
    if len(persons) * 2 < len(labels):
        return -1  # mostly ground or background
    return int(np.bincount(persons).argmax())


# ---------------------------------------------------------------------------- proposals
def test_proposals_find_every_person(results):
    checked, skipped, missed = 0, [], []
    for scene, proposals, _ in results:
        counts = scene.points_per_person()
        for i, person in enumerate(scene.frame.persons):
            if counts[i] < MIN_POINTS:
                continue
            own = lidar_box(scene, i)
            if own is None or box_iou(own, person.bbox_xywh) < 0.5:
                skipped.append((scene.preset.name, scene.seed, i))
                continue
            checked += 1
            best = max((box_iou(p.box_xywh, person.bbox_xywh) for p in proposals), default=0.0)
            if best < 0.5:
                missed.append((scene.preset.name, scene.seed, i, round(best, 2)))
    assert checked >= 30
    assert not missed, f"persons without a proposal (IoU ≥ 0.5): {missed}; skipped as hidden: {skipped}"


def test_no_proposal_on_background_or_ground(results):
    background_points = 0
    for scene, proposals, _ in results:
        background_points += int((scene.cloud_labels == -2).sum())
        for proposal in proposals:
            assert proposal_owner(scene, proposal) >= 0, (
                f"{scene.preset.name} seed {scene.seed}: proposal on background/ground, gates {proposal.gates}"
            )
    assert background_points > 0  # the scenes do hold background objects


def test_proposal_records(results):
    for scene, proposals, cloud_cam in results:
        camera = scene.frame.camera
        distances = [p.distance for p in proposals]
        assert distances == sorted(distances)
        for p in proposals:
            x, y, w, h = p.box_xywh
            assert 0 <= x and 0 <= y and x + w <= camera.width + 1e-9 and y + h <= camera.height + 1e-9
            assert w >= 8 and h >= 8
            assert p.num_points == len(p.point_ids) >= 20
            assert np.allclose(p.centroid_cam, cloud_cam[p.point_ids].mean(axis=0), rtol=0, atol=1e-9)  # metres
            assert 0.0 <= p.score <= 1.0
            assert {"top_height", "planarity", "footprint_major"} <= set(p.gates)


def test_proposal_point_ids_are_the_person(results):
    checked = 0
    for scene, proposals, _ in results:
        counts = scene.points_per_person()
        for p in proposals:
            i = proposal_owner(scene, p)
            if i < 0 or counts[i] < MIN_POINTS:
                continue
            recall, contamination = recall_contamination(p.point_ids, np.flatnonzero(scene.cloud_labels == i))
            checked += 1
            assert recall >= 0.95 and contamination <= 0.05, (scene.preset.name, scene.seed, i, recall, contamination)
    assert checked >= 30


def test_proposals_are_deterministic(results):
    scene, proposals = results[0][0], results[0][1]
    again = propose_persons(scene.frame.cloud_lidar, scene.frame.T_cam_lidar, scene.frame.camera)
    assert len(again) == len(proposals)
    for a, b in zip(again, proposals):
        assert np.array_equal(a.box_xywh, b.box_xywh) and np.array_equal(a.point_ids, b.point_ids)


# ---------------------------------------------------------------------------- crops
def test_crops_from_true_boxes(results):
    checked, failures = 0, []
    for scene, _, cloud_cam in results:
        counts = scene.points_per_person()
        boxes = np.array([p.bbox_xywh for p in scene.frame.persons])
        crops = crop_persons_points(cloud_cam, boxes, scene.frame.camera)
        for i, ids in enumerate(crops):
            if counts[i] < MIN_POINTS:
                continue
            checked += 1
            recall, contamination = recall_contamination(ids, np.flatnonzero(scene.cloud_labels == i))
            if recall < 0.95 or contamination > 0.05:
                failures.append((scene.preset.name, scene.seed, i, round(recall, 3), round(contamination, 3)))
    assert checked >= 30
    assert not failures, f"(preset, seed, person, recall, contamination): {failures}"


def test_crops_from_proposal_boxes(results):
    checked, skipped, failures = 0, [], []
    for scene, proposals, cloud_cam in results:
        counts = scene.points_per_person()
        occluded = scene.occluded.sum(axis=1)
        owners = [proposal_owner(scene, p) for p in proposals]
        for i, person in enumerate(scene.frame.persons):
            if counts[i] < MIN_POINTS:
                continue
            mine = [p for p, o in zip(proposals, owners) if o == i and box_iou(p.box_xywh, person.bbox_xywh) >= 0.5]
            if not mine:
                continue  # covered by test_proposals_find_every_person
            if occluded[i] >= 5:
                skipped.append((scene.preset.name, scene.seed, i))
                continue
            checked += 1
            ids = crop_person_points(cloud_cam, mine[0].box_xywh, scene.frame.camera)
            recall, contamination = recall_contamination(ids, np.flatnonzero(scene.cloud_labels == i))
            if recall < 0.95 or contamination > 0.05:
                failures.append((scene.preset.name, scene.seed, i, round(recall, 3), round(contamination, 3)))
    assert checked >= 30
    assert not failures, f"(preset, seed, person, recall, contamination): {failures}; skipped (hidden): {skipped}"


def test_crop_with_lidar_ground_matches(results):
    """The LiDAR-frame ground moved to the camera frame gives the same crops as the camera fit."""
    scene, _, cloud_cam = results[0]
    plane = fit_ground_plane(scene.frame.cloud_lidar).transformed(scene.frame.T_cam_lidar)
    assert plane.tilt_deg((0, -1, 0)) < 2.0
    for person in scene.frame.persons:
        a = crop_person_points(cloud_cam, person.bbox_xywh, scene.frame.camera)
        b = crop_person_points(cloud_cam, person.bbox_xywh, scene.frame.camera, ground=plane)
        assert len(np.setxor1d(a, b)) <= 0.02 * max(len(a), 1)


def test_keypoint_visibility_reuses_the_geometry_function(results):
    scene, _, cloud_cam = results[0]
    for i, person in enumerate(scene.frame.persons):
        ids = crop_person_points(cloud_cam, person.bbox_xywh, scene.frame.camera)
        flags = lidar_visibility_for_keypoints(cloud_cam[ids], person.keypoints, scene.frame.camera)
        expected = keypoint_lidar_visibility(cloud_cam[ids], person.keypoints[:, :2], scene.frame.camera, 50)
        assert flags.shape == (17,)
        assert np.array_equal(flags, expected)


# ---------------------------------------------------------------------------- degenerate inputs
def _camera():
    return PinholeCamera(np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]]), 640, 480)


def _T():
    from smplify3d_core.sim.presets import get_preset

    return get_preset("humanm3").T_cam_lidar


def test_empty_and_nan_clouds():
    camera, T = _camera(), _T()
    box = np.array([100.0, 100.0, 50.0, 120.0])
    for cloud in (np.zeros((0, 3)), np.full((1000, 3), np.nan), np.array([[np.inf, 0.0, 1.0]])):
        assert propose_persons(cloud, T, camera) == []
        assert len(crop_person_points(cloud, box, camera)) == 0
        assert crop_persons_points(cloud, np.array([box, box]), camera)[0].dtype == np.int64
    assert len(euclidean_clusters(np.zeros((0, 3)))) == 0
    assert fit_ground_plane(np.zeros((0, 3))) is None
    assert fit_ground_plane(np.full((5, 3), np.nan)) is None
    assert cluster_statistics(np.zeros((0, 3)), np.zeros(0, dtype=int)) == []


def test_nan_rows_are_ignored(results):
    scene, proposals, cloud_cam = results[0]
    cloud = scene.frame.cloud_lidar.copy()
    rng = np.random.default_rng(0)
    bad = rng.choice(len(cloud), size=len(cloud) // 20, replace=False)
    cloud[bad] = np.nan
    again = propose_persons(cloud, scene.frame.T_cam_lidar, scene.frame.camera)
    assert len(again) == len(proposals)
    for p in again:
        assert not np.isin(p.point_ids, bad).any()
    cam = cloud_cam.copy()
    cam[bad] = np.nan
    ids = crop_person_points(cam, scene.frame.persons[0].bbox_xywh, scene.frame.camera)
    assert len(ids) and not np.isin(ids, bad).any()


def test_two_million_points(results):
    """A real scan plus 2 million random points far away (30–80 m): the people are still found and
    cropped (about 5 s for the proposals and 2 s for four crops on 2 cores; not asserted)."""
    scene, _, _ = results[0]
    frame = scene.frame
    rng = np.random.default_rng(1)
    n = 2_000_000 - len(frame.cloud_lidar)
    far = np.stack([rng.uniform(30, 80, n), rng.uniform(-40, 40, n), rng.uniform(-1.7, 8.0, n)], axis=1)
    cloud = np.concatenate([frame.cloud_lidar, far])
    proposals = propose_persons(cloud, frame.T_cam_lidar, frame.camera)
    counts = scene.points_per_person()
    for i, person in enumerate(frame.persons):
        if counts[i] >= MIN_POINTS:
            assert max(box_iou(p.box_xywh, person.bbox_xywh) for p in proposals) >= 0.5
    cloud_cam = transform_points(frame.T_cam_lidar, cloud)
    crops = crop_persons_points(cloud_cam, np.array([p.bbox_xywh for p in frame.persons]), frame.camera)
    for i, ids in enumerate(crops):
        if counts[i] >= MIN_POINTS:
            recall, contamination = recall_contamination(ids, np.flatnonzero(scene.cloud_labels == i))
            assert recall >= 0.95 and contamination <= 0.05


# ---------------------------------------------------------------------------- detector boxes
def test_boxes_from_detector_drops_bad_boxes_with_reasons():
    camera = _camera()
    boxes = np.array(
        [
            [100.0, 50.0, 80.0, 200.0],  # fine
            [700.0, 10.0, 50.0, 50.0],  # right of the image
            [200.0, 100.0, 0.0, 50.0],  # zero width
            [-30.0, 400.0, 100.0, 200.0],  # sticks out: clamped
            [np.nan, 0.0, 10.0, 10.0],  # not finite
            [10.0, -80.0, 30.0, 60.0],  # above the image (bottom edge at y = -20)
        ]
    )
    result = boxes_from_detector(boxes, camera)
    assert result.indices.tolist() == [0, 3]
    assert np.allclose(result.boxes_xywh[0], boxes[0], rtol=0, atol=1e-9)  # pixels
    assert np.allclose(result.boxes_xywh[1], [0.0, 400.0, 70.0, 80.0], rtol=0, atol=1e-9)
    reasons = dict(result.dropped)
    assert reasons[1] == "outside the image"
    assert reasons[2] == "zero or negative area"
    assert reasons[4] == "not finite"
    assert reasons[5] == "outside the image"
    empty = boxes_from_detector(np.zeros((0, 4)), camera)
    assert empty.boxes_xywh.shape == (0, 4) and empty.dropped == []
    with pytest.raises(ValueError):
        boxes_from_detector(np.zeros((2, 3)), camera)


# ---------------------------------------------------------------------------- clustering helpers
def test_ground_fit_tilted_plane_and_limits():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-10, 10, size=(5000, 2))
    tilt = np.radians(5.0)
    z = -1.8 + np.tan(tilt) * xy[:, 0] + rng.normal(0, 0.01, len(xy))
    ground = np.column_stack([xy, z])
    blob = rng.normal([4.0, 1.0, -1.0], 0.2, size=(300, 3))
    plane = fit_ground_plane(np.concatenate([ground, blob]))
    assert plane is not None and abs(plane.tilt_deg((0, 0, 1)) - 5.0) < 0.5
    assert abs(plane.height(np.array([[0.0, 0.0, 0.0]]))[0] - 1.8) < 0.02
    # a wall (vertical plane) is never taken for the ground, nor a ceiling above the sensor
    wall = np.column_stack([np.full(3000, 5.0), rng.uniform(-5, 5, 3000), rng.uniform(-1, 2, 3000)])
    assert fit_ground_plane(wall) is None
    ceiling = np.column_stack([rng.uniform(-5, 5, (3000, 2)), np.full(3000, 2.5)])
    assert fit_ground_plane(ceiling) is None
    moved = plane.transformed(_T())
    p = np.array([[1.0, 2.0, 0.5]])
    assert np.isclose(moved.height(transform_points(_T(), p))[0], plane.height(p)[0], rtol=0, atol=1e-9)  # metres


def test_euclidean_clusters_and_stats():
    rng = np.random.default_rng(0)
    a = rng.normal([0, 0, 1], 0.1, size=(200, 3))
    b = rng.normal([3, 0, 1], 0.1, size=(100, 3))
    c = rng.normal([10, 0, 1], 0.01, size=(5, 3))
    points = np.concatenate([b, a, c, [[np.nan, 0, 0]]])
    labels = euclidean_clusters(points, 0.3, min_points=10)
    assert labels[-1] == -1 and np.all(labels[300:305] == -1)
    assert np.all(labels[100:300] == 0) and np.all(labels[:100] == 1)  # largest first
    assert np.array_equal(labels, euclidean_clusters(points, 0.3, min_points=10))
    exact = euclidean_clusters(points, 0.3, min_points=10, voxel_size=0)
    assert np.array_equal(exact, labels)
    stats = cluster_statistics(points, labels, GroundPlane(np.array([0.0, 0.0, 1.0]), 0.0))
    assert [s.count for s in stats] == [200, 100]
    assert np.allclose(stats[0].centroid, [0, 0, 1], atol=0.05)
    assert 1.1 < stats[0].top_height < 1.6 and stats[0].footprint_major >= stats[0].footprint_minor


def test_voxel_downsample_and_stacking():
    points = np.array([[0.01, 0.01, 0.01], [0.02, 0.02, 0.02], [0.5, 0.5, 0.5]])
    centroids, inverse = voxel_downsample(points, 0.1)
    assert len(centroids) == 2 and inverse[0] == inverse[1] != inverse[2]
    assert np.allclose(centroids[inverse[0]], [0.015, 0.015, 0.015], rtol=0, atol=1e-9)  # metres
    # upper body above the legs (a 0.4 m gap) merges; a person beside a pole does not
    legs = np.column_stack([np.zeros(20), np.zeros(20), np.linspace(0.0, 0.6, 20)])
    upper = np.column_stack([np.zeros(20), np.zeros(20), np.linspace(1.0, 1.7, 20)])
    pole = np.column_stack([np.full(20, 0.3), np.zeros(20), np.linspace(0.0, 2.0, 20)])
    points = np.concatenate([legs, upper, pole])
    labels = np.repeat([0, 1, 2], 20)
    merged = merge_stacked_clusters(points, labels)
    assert len(set(merged[:40])) == 1 and merged[40] != merged[0]


def test_config_defaults_are_documented():
    config = ProposalConfig()
    doc = ProposalConfig.__doc__
    for name in vars(config):
        assert name in doc, f"ProposalConfig.{name} is not documented"
