"""The verdict after the fit: good frames give valid bodies, broken sensor set-ups give flagged, invalid ones.

The broken cases are those that were published as ``valid: true`` before the verdict existed: a
camera_info whose focal length is 1000x too large, a clutter cloud around the persons that drags
the bodies away, a cloud in millimetres, and a camera <- LiDAR transform 0.5 m off sideways. Each
frame goes through :class:`FrameProcessor` in observations mode (keypoints and initial estimates
given, points cropped from the cloud), as the node and ``smplify3d-bag process`` run it.
"""
import copy

import numpy as np
import pytest
import torch

from smplify3d_core.fit.config import FitConfig
from smplify3d_core.fit.verdict import FLAGS, VerdictConfig, judge, measure
from smplify3d_core.geometry.transforms import rigid_inverse, transform_points
from smplify3d_core.models import build_fitter
from smplify3d_core.observe import SensorFrame
from smplify3d_core.pipeline import FrameProcessor, FrameStatus
from smplify3d_core.pipeline_config import PipelineConfig
from smplify3d_core.sim.scene import simulate_scene
from smplify3d_core.types import PinholeCamera

VERDICT_FLAGS = set(FLAGS.values())
#: A person that is not valid says why: a failed check, or no LiDAR point to check it with.
REASONS = VERDICT_FLAGS | {"no_lidar_points"}


@pytest.fixture(scope="module")
def scene(smpl_body):
    return simulate_scene(smpl_body, persons=3, preset="humanm3", seed=21)


@pytest.fixture(scope="module")
def fitter(smpl_body):
    return build_fitter(smpl_body, FitConfig.preset("humanm3"), device="cpu")


def _process(scene, fitter, cloud=None, camera=None, T_cam_lidar=None, config=None):
    frame = scene.frame
    given = []
    for person in frame.persons:  # the node's observations mode: the points are cropped from the cloud
        person = copy.copy(person)
        person.points = np.zeros((0, 3))
        given.append(person)
    sensor = SensorFrame(frame.image, frame.cloud_lidar if cloud is None else cloud, camera or frame.camera,
                         frame.T_cam_lidar if T_cam_lidar is None else T_cam_lidar, observations=given)
    return FrameProcessor(config or PipelineConfig(), fitter).process(sensor)


def _assert_none_valid(outcome, allowed=REASONS):
    """Every person of a fitted frame is invalid and carries one of ``allowed`` (an empty or skipped frame
    publishes no body, which is honest too)."""
    if outcome.status is not FrameStatus.FITTED:
        return
    result = outcome.fit.result
    for b, flags in enumerate(result.flags):
        assert not bool(result.valid[b]), f"person {b} published as valid with flags {flags}"
        assert set(flags) & allowed, f"person {b} is invalid without saying why: {flags}"


def test_good_frame_is_valid_with_no_verdict_flags(scene, fitter):
    outcome = _process(scene, fitter)
    assert outcome.status is FrameStatus.FITTED and len(outcome.fit.frame.persons) == 3
    result, limits = outcome.fit.result, VerdictConfig()
    verdict = result.verdict
    assert verdict is not None
    assert bool(result.valid.all()) and bool(result.fitted.all())
    for flags in result.flags:
        assert not set(flags) & VERDICT_FLAGS, flags
    # with margin: half the thresholds would still pass (measured: <= 5 px, <= 2 cm, 1.7 m, <= 4 cm, ~10 m)
    assert float(verdict.reprojection_error_px.max()) < 0.5 * limits.max_reprojection_error_px
    assert float(verdict.point_residual_m.max()) < 0.5 * limits.max_point_residual_m
    assert float(verdict.depth_offset_m.abs().max()) < 0.5 * limits.max_depth_offset_m
    assert limits.min_height_m + 0.2 < float(verdict.height_m.min()) <= float(verdict.height_m.max()) < limits.max_height_m - 0.2
    assert limits.min_range_m < float(verdict.range_m.min()) <= float(verdict.range_m.max()) < limits.max_range_m
    assert torch.equal(verdict.reprojection_error_px, result.reprojection_error_px)


def test_focal_length_1000_times_too_large_is_reprojection_error_high(scene, fitter):
    frame = scene.frame
    K = frame.camera.K.copy()
    K[0, 0] *= 1000
    K[1, 1] *= 1000
    outcome = _process(scene, fitter, camera=PinholeCamera(K, frame.camera.width, frame.camera.height))
    assert outcome.status is FrameStatus.FITTED
    _assert_none_valid(outcome)
    for b, flags in enumerate(outcome.fit.result.flags):
        assert "reprojection_error_high" in flags, flags
        assert float(outcome.fit.result.verdict.reprojection_error_px[b]) > 1000


def _clutter(frame, count=250_000, seed=0):
    """The frame's cloud plus ``count`` random points in the persons' image boxes, 3-20 m from the camera
    (a bush, a fence, rain: anything the crops pick up with the person)."""
    rng = np.random.default_rng(seed)
    K, clouds = frame.camera.K, [frame.cloud_lidar]
    for person in frame.persons:
        x, y, w, h = person.bbox_xywh
        n = count // len(frame.persons)
        u, v = rng.uniform(x - 0.5 * w, x + 1.5 * w, n), rng.uniform(y - 0.25 * h, y + h, n)
        z = rng.uniform(3.0, 20.0, n)
        camera_points = np.column_stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z])
        clouds.append(transform_points(rigid_inverse(frame.T_cam_lidar), camera_points))
    return np.concatenate(clouds)


def test_a_clutter_cloud_that_drags_the_bodies_away_is_flagged(scene, fitter):
    outcome = _process(scene, fitter, cloud=_clutter(scene.frame))
    assert outcome.status is FrameStatus.FITTED
    lidar_flags = {"point_residual_high", "depth_disagrees_with_points"}
    _assert_none_valid(outcome, lidar_flags)
    assert float(outcome.fit.result.verdict.point_residual_m.min()) > 1.0  # metres of clutter around each body


def test_a_cloud_in_millimetres_is_skipped_with_a_reason(scene, fitter):
    """Most points beyond max_point_range_m: the frame is skipped (is it in metres?), no body published."""
    outcome = _process(scene, fitter, cloud=scene.frame.cloud_lidar * 1000.0)
    assert outcome.status is FrameStatus.SKIPPED and "max_point_range_m" in outcome.reason


def test_persons_without_points_are_not_valid(scene, fitter):
    """The cloud lifted 100 m (no point behind any box): fitted from the image alone, never valid."""
    outcome = _process(scene, fitter, cloud=scene.frame.cloud_lidar + np.array([0.0, 0.0, 100.0]))
    assert outcome.status is FrameStatus.FITTED
    _assert_none_valid(outcome)
    assert all("no_lidar_points" in flags for flags in outcome.fit.result.flags)


def test_extrinsics_half_a_metre_off_sideways_are_flagged(scene, fitter):
    T = scene.frame.T_cam_lidar.copy()
    T[0, 3] += 0.5
    outcome = _process(scene, fitter, T_cam_lidar=T)
    assert outcome.status is FrameStatus.FITTED
    _assert_none_valid(outcome)


def test_without_points_a_person_is_judged_by_the_image_checks_when_allowed(scene, fitter):
    """require_lidar_points false: a person without LiDAR points can be valid (the LiDAR checks do not run)."""
    config = PipelineConfig.from_dict({"verdict": {"require_lidar_points": False}})
    outcome = _process(scene, fitter, cloud=scene.frame.cloud_lidar + np.array([0.0, 0.0, 100.0]), config=config)
    assert outcome.status is FrameStatus.FITTED
    result = outcome.fit.result
    assert all("no_lidar_points" in flags for flags in result.flags)
    assert bool(result.valid.any())
    assert bool(torch.isnan(result.verdict.point_residual_m).all() and torch.isnan(result.verdict.depth_offset_m).all())


# ---------------------------------------------------------------------------------------------- units
def _measures(**values):
    base = {"point_residual_m": 0.02, "height_m": 1.7, "depth_offset_m": 0.05, "range_m": 8.0}
    base.update(values)
    return {k: torch.tensor([v], dtype=torch.float64) for k, v in base.items()}


@pytest.mark.parametrize("changes, flag", [
    ({"reprojection": 31.0}, "reprojection_error_high"),
    ({"point_residual_m": 0.5}, "point_residual_high"),
    ({"height_m": 1.0}, "implausible_height"),
    ({"height_m": 2.6}, "implausible_height"),
    ({"depth_offset_m": -0.6}, "depth_disagrees_with_points"),
    ({"depth_offset_m": 0.6}, "depth_disagrees_with_points"),
    ({"range_m": 0.2}, "out_of_range"),
    ({"range_m": 4500.0}, "out_of_range"),
    ({"range_m": float("inf")}, "out_of_range"),
    ({}, None),
])
def test_each_check_fails_alone_with_its_flag(changes, flag):
    reprojection = torch.tensor([changes.pop("reprojection", 5.0)])
    verdict = judge(_measures(**changes), reprojection, torch.tensor([True]), torch.tensor([True]), VerdictConfig())
    assert verdict.flags == [[flag] if flag else []]
    assert bool(verdict.passed[0]) is (flag is None)


def test_persons_without_points_or_not_fitted():
    no_points = _measures(point_residual_m=float("nan"), depth_offset_m=float("nan"))
    args = (torch.tensor([5.0]), torch.tensor([False]), torch.tensor([True]))
    strict = judge(no_points, *args, VerdictConfig())
    assert strict.flags == [[]] and not bool(strict.passed[0])  # the input flag no_lidar_points says why
    lenient = judge(no_points, *args, VerdictConfig(require_lidar_points=False))
    assert lenient.flags == [[]] and bool(lenient.passed[0])
    unfitted = judge(_measures(range_m=float("nan")), torch.tensor([5.0]), torch.tensor([True]), torch.tensor([False]),
                     VerdictConfig())
    assert unfitted.flags == [[]] and not bool(unfitted.passed[0])


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_measures_on_a_known_geometry(device):
    """A box-shaped 'body' 1.8 m tall, points 5 cm in front of its front face, the LiDAR at the origin."""
    grid = torch.stack(torch.meshgrid(torch.linspace(-0.2, 0.2, 9), torch.linspace(-0.9, 0.9, 37),
                                      torch.tensor([-0.1, 0.1]), indexing="ij"), -1).reshape(-1, 3)
    rest = grid[None].repeat(2, 1, 1)
    vertices = rest + torch.tensor([[0.0, 0.0, 6.0], [1.0, 0.0, 20.0]])[:, None]
    front = vertices[:, vertices[0, :, 2] < 6.0]  # the face towards the sensor
    points = front[:, ::3] - torch.tensor([0.0, 0.0, 0.05])
    mask = torch.ones(points.shape[:2], dtype=torch.bool)
    mask[1] = False  # the second person has no points
    values = measure(vertices.to(device), rest.to(device), points.to(device), mask.to(device), torch.zeros(3, device=device))
    assert torch.allclose(values["height_m"].cpu(), torch.tensor([1.8, 1.8]), atol=1e-5)
    assert float(values["point_residual_m"][0]) == pytest.approx(0.05, abs=1e-4)
    point_ranges = np.sort(points[0].norm(dim=-1).numpy())
    expected_offset = 6.0 - point_ranges[(len(point_ranges) - 1) // 2]  # the centroid lies 15 cm behind the points
    assert float(values["depth_offset_m"][0]) == pytest.approx(expected_offset, abs=1e-4)
    assert 0.1 < expected_offset < 0.15
    assert float(values["range_m"][1]) == pytest.approx(float(np.hypot(1.0, 20.0)), abs=1e-4)
    assert bool(torch.isnan(values["point_residual_m"][1])) and bool(torch.isnan(values["depth_offset_m"][1]))
