"""Tracked fitting over short simulated streams: warm starts, births, restarts, the fused shape."""
import copy

import numpy as np
import pytest
import torch

from smplify3d_core.fit.batches import scatter_persons, select_persons, stack_inputs
from smplify3d_core.fit.config import FitConfig
from smplify3d_core.eval.stream import standing_height
from smplify3d_core.fit.inputs import FitInputs
from smplify3d_core.models import build_fitter
from smplify3d_core.pipeline import FrameProcessor, FrameStatus
from smplify3d_core.pipeline_config import PipelineConfig
from smplify3d_core.sim.presets import get_preset
from smplify3d_core.sim.scene import PersonPlacement, simulate_scene
from smplify3d_core.fit.optimizer import WarmStart
from smplify3d_core.tracked_fit import RESTART_FLAG, _fit_warm, cut_off_by_image, publish_smoothed

# a small sensor: 640x360 image, fewer beams (fast to simulate and fit)
PRESET = get_preset("humanm3").with_changes(name="small", image_width=640, image_height=360, focal_px=470.0,
                                            lidar_beams=64, lidar_azimuth_res_deg=0.25, background_objects=0,
                                            distance_range=(4.0, 7.0))
BETAS = np.array([0.8, -0.6, 0.3, 0.0, 0.2, -0.1, 0.0, 0.1, 0.0, 0.0])


@pytest.fixture(scope="module")
def fitter(smpl_body):
    return build_fitter(smpl_body, FitConfig.preset("humanm3"), device="cpu", seed=0)


def _frame(body, placements, index):
    return simulate_scene(body, preset=PRESET, seed=500 + index, placements=placements).frame


def _standing(lateral=0.0, distance=5.0, yaw=0.3):
    return PersonPlacement(distance=distance, lateral=lateral, yaw=yaw, pose="standing", betas=BETAS)


def test_a_person_standing_still_converges_then_stays_put_and_its_shape_settles(smpl_body, fitter):
    config = PipelineConfig()
    config.tracker.shape_frames = 5
    processor = FrameProcessor(config, fitter)
    pelvis, warm, errors, betas, held = [], [], [], [], []
    for f in range(7):
        frame = _frame(smpl_body, [_standing()], f)
        outcome = processor.process_observed(frame, stamp=f / 10)
        assert outcome.status is FrameStatus.FITTED
        result = outcome.fit.result
        pelvis.append(result.joints[0, 0].double().numpy())
        betas.append(result.betas[0].double().numpy())
        warm.append(outcome.tracks[0].warm_started)
        held.append(outcome.tracks[0].shape_held)
        truth = frame.truth["0"]
        errors.append(float(np.linalg.norm(result.joints[0, 0].double().numpy() - truth.joints[0])))
        assert outcome.track_ids == [0] and bool(result.valid[0])
    assert warm == [False] + [True] * 6
    assert held == [False] * 5 + [True] * 2  # after 5 fused fits the shape is held (the short schedule)
    assert outcome.tracks[0].age_s == pytest.approx(0.6, abs=1e-9)
    # warm fits stay put: the pelvis moves less between warm frames than the per-frame noise of a cold fit would
    steps = np.linalg.norm(np.diff(np.array(pelvis[1:]), axis=0), axis=1)
    assert steps.max() < 0.03, steps
    assert np.mean(errors[3:]) < 0.1
    track = processor.tracker.tracks[0]
    assert track.good_frames == 5 and track.shape_fitted and track.shape_data == []  # the kept frames are let go
    # once settled, the shape fitted to the 5 fused frames together is held: the later fits keep it
    np.testing.assert_allclose(betas[6], track.shape, atol=1e-5)
    np.testing.assert_allclose(betas[5], track.shape, atol=1e-5)
    # single-frame cold fits of this person are 3.7 cm short on average (1.730 m for 1.767 m over six
    # frames: the humanm3 preset's strong shape prior); one shape fitted to the frames together, the
    # prior counted once, is closer (the mean of the 5 fits' betas was 5.1 cm short)
    mean_error = abs(standing_height(smpl_body, np.mean(betas[:5], axis=0)) - standing_height(smpl_body, BETAS))
    shape_error = abs(standing_height(smpl_body, track.shape) - standing_height(smpl_body, BETAS))
    assert shape_error < mean_error and shape_error < 0.04, (shape_error, mean_error)


def test_with_the_facing_preset_the_fused_shape_is_within_2_cm_of_the_true_height(smpl_body):
    """The node's default preset (sensor-facing surface, lighter shape prior) on the full humanm3
    sensor: the track's shape, fused over its first 5 fits, gives the person's height within 2 cm
    (≈ 9 mm short observed; the humanm3 preset's fits are ≈ 4.6 cm short on the small sensor above)."""
    processor = FrameProcessor(PipelineConfig(), build_fitter(smpl_body, FitConfig.preset("facing"), device="cpu", seed=0))
    processor.config.tracker.shape_frames = 5
    for f in range(6):
        frame = simulate_scene(smpl_body, preset="humanm3", seed=500 + f, placements=[_standing()]).frame
        outcome = processor.process_observed(frame, stamp=f / 10)
        assert outcome.track_ids == [0] and bool(outcome.fit.result.valid[0])
    track = processor.tracker.tracks[0]
    assert track.good_frames == 5
    assert abs(standing_height(smpl_body, track.shape) - standing_height(smpl_body, BETAS)) < 0.02  # metres


def test_a_new_person_entering_gets_a_cold_fit_and_a_new_id(smpl_body, fitter):
    processor = FrameProcessor(PipelineConfig(), fitter)
    for f in range(3):
        outcome = processor.process_observed(_frame(smpl_body, [_standing(-1.0)], f), stamp=f / 10)
    frame = _frame(smpl_body, [_standing(-1.0), _standing(1.2, 6.0, -0.4)], 3)
    outcome = processor.process_observed(frame, stamp=0.3)
    by_truth = {p.tracking_id: track for p, track in zip(outcome.fit.frame.persons, outcome.tracks)}
    assert by_truth["0"].track_id == 0 and by_truth["0"].warm_started
    assert by_truth["1"].track_id == 1 and not by_truth["1"].warm_started and by_truth["1"].age_s == 0.0
    assert processor.tracker.births == [1]


def test_a_track_whose_warm_fit_goes_bad_is_restarted_cold_and_flagged(smpl_body, fitter):
    """The person's points suddenly are someone else's, 0.6 m beside it: the warm fit cannot explain
    them, fails the verdict, and the person is fitted again cold, flagged ``track_restarted``."""
    processor = FrameProcessor(PipelineConfig(), fitter)
    for f in range(3):
        outcome = processor.process_observed(_frame(smpl_body, [_standing()], f), stamp=f / 10)
        assert outcome.tracks[0].warm_started == (f > 0)
    frame = _frame(smpl_body, [_standing()], 3)
    person = copy.copy(frame.persons[0])
    person.points = person.points + np.array([0.6, 0.0, 0.0])
    frame.persons = [person]
    outcome = processor.process_observed(frame, stamp=0.3)
    track = outcome.tracks[0]
    assert track.track_id == 0 and track.restarted and not track.warm_started
    assert RESTART_FLAG in outcome.fit.result.flags[0]
    assert processor.tracker.tracks[0].good_frames <= 1  # the track's pose and shape were forgotten


def test_tracked_persons_are_published_smoothed_but_never_far_from_their_fit(smpl_body, fitter):
    processor = FrameProcessor(PipelineConfig(), fitter)
    for f in range(4):
        outcome = processor.process_observed(_frame(smpl_body, [_standing()], f), stamp=f / 10)
    result, tracker = outcome.fit.result, processor.tracker
    track = tracker.tracks[0]
    # the published body: the pose filter's pose, the motion filter's pelvis (the camera is the tracking frame)
    np.testing.assert_allclose(result.body_pose[0].double().numpy(), track.pose, atol=1e-5)
    np.testing.assert_allclose(result.joints[0, 0].double().numpy(), track.state[:3], atol=1e-5)
    published = copy.deepcopy(result)
    # a filtered pose 1 rad off at the left elbow would move the hand by more than 0.2 m: the fit stays
    # as it is and the filter is reset to it
    track.pose = result.body_pose[0].double().numpy().copy()
    track.pose[51:54] += 1.0
    publish_smoothed(fitter, tracker, published, [0], [0], np.eye(4), max_offset=0.2)
    np.testing.assert_allclose(published.vertices.numpy(), result.vertices.numpy(), atol=0)
    np.testing.assert_allclose(track.pose, result.body_pose[0].double().numpy(), atol=1e-6)
    # a small change is published
    track.pose = track.pose + 0.01
    publish_smoothed(fitter, tracker, published, [0], [0], np.eye(4), max_offset=0.2)
    np.testing.assert_allclose(published.body_pose[0].double().numpy(), track.pose, atol=1e-5)
    assert 0.0 < float((published.joints[0] - result.joints[0]).norm(dim=-1).max()) <= 0.2


def test_cold_mode_fits_every_frame_from_its_own_estimate(smpl_body, fitter):
    config = PipelineConfig()
    config.tracker.warm_start = False
    processor = FrameProcessor(config, fitter)
    for f in range(3):
        outcome = processor.process_observed(_frame(smpl_body, [_standing()], f), stamp=f / 10)
        assert outcome.track_ids == [0] and not outcome.tracks[0].warm_started


def test_groups_of_persons_split_and_merge_back_in_order(smpl_body, fitter):
    frame = _frame(smpl_body, [_standing(-1.5), _standing(0.0, 6.0), _standing(1.5, 5.5)], 0)
    inputs = FitInputs.from_observations(frame.persons, frame.camera, frame.T_cam_lidar)
    whole = fitter.fit(inputs)
    parts = [([2, 0], select_persons(whole, [2, 0])), ([1], select_persons(whole, [1]))]
    merged = scatter_persons(parts, 3)
    for name in ("betas", "transl", "vertices", "fitted"):
        torch.testing.assert_close(getattr(merged, name), getattr(whole, name), rtol=0, atol=0)
    assert merged.flags == whole.flags
    with pytest.raises(ValueError, match="each of 0..2 once"):
        scatter_persons(parts[:1], 3)


def test_settled_and_fusing_tracks_are_fitted_apart_each_with_its_schedule(smpl_body, fitter):
    """A warm batch mixing settled and fusing shapes is fitted as two batches, so the settled persons run
    the short schedule: each person gets the fit it gets alone."""
    frame = _frame(smpl_body, [_standing(-1.2), _standing(1.2, 6.0)], 0)
    inputs = FitInputs.from_observations(frame.persons, frame.camera, frame.T_cam_lidar)
    start = WarmStart(body_pose=inputs.init_body_pose.clone(), transl=inputs.init_transl.clone(),
                      shape_fixed=torch.tensor([False, True]), shape_prior_scale=torch.tensor([0.5, 0.1]))
    verdict = PipelineConfig().verdict
    both = _fit_warm(fitter, inputs, [0, 1], start, verdict, None)
    schedule = fitter.config.tracking
    assert schedule.settled_stage2_iterations < schedule.stage2_iterations
    for k in (0, 1):
        alone = _fit_warm(fitter, inputs, [k], select_persons(start, [k]), verdict, None)
        for name in ("betas", "body_pose", "transl", "vertices", "valid"):
            torch.testing.assert_close(getattr(both, name)[k], getattr(alone, name)[0], rtol=0, atol=1e-6)
    assert not torch.equal(both.betas[0], inputs.init_betas[0]) and torch.equal(both.betas[1], inputs.init_betas[1])


def _fitted_frames(body, fitter, placements, count):
    """``count`` frames of ``placements`` fitted cold: [(FitInputs of the frame, FitResult)]."""
    frames = []
    for f in range(count):
        frame = _frame(body, placements, 40 + f)
        inputs = FitInputs.from_observations(frame.persons, frame.camera, frame.T_cam_lidar)
        frames.append((inputs, fitter.fit(inputs)))
    return frames


@pytest.mark.parametrize("pointcloud_weight", [0.0, 600.0])  # keypoints only (default), and with the chamfer term
def test_one_shape_is_fitted_per_group_of_frames_and_the_groups_do_not_mix(smpl_body, fitter, pointcloud_weight):
    if pointcloud_weight:
        config = FitConfig.preset("humanm3")
        config.tracking.shape_fit_pointcloud_weight = pointcloud_weight
        fitter = build_fitter(smpl_body, config, device="cpu", seed=0)
    frames = _fitted_frames(smpl_body, fitter, [_standing(-1.0), _standing(1.2, 6.0, -0.4)], 3)
    # group 0: person 0 in frames 0-2; group 1: person 1 in frames 0-1 (their points differ in number)
    members = [(f, 0, 0) for f in range(3)] + [(f, 1, 1) for f in range(2)]
    inputs = stack_inputs([select_persons(frames[f][0], [k]) for f, k, _ in members])
    assert inputs.batch_size == 5 and inputs.points.shape[1] == max(int(frames[f][0].points_mask[k].sum())
                                                                     for f, k, _ in members)
    fits = {name: torch.cat([getattr(frames[f][1], name)[k:k + 1] for f, k, _ in members])
            for name in ("global_orient", "body_pose", "betas", "transl")}
    groups = torch.tensor([g for _, _, g in members])
    betas = fitter.fit_shared_shape(inputs, fits["global_orient"], fits["body_pose"], fits["betas"], fits["transl"], groups)
    np.testing.assert_allclose(betas[:3].numpy(), betas[:1].expand(3, -1).numpy(), atol=1e-6)  # one shape per group
    np.testing.assert_allclose(betas[3:].numpy(), betas[3:4].expand(2, -1).numpy(), atol=1e-6)
    assert float((betas[0] - fits["betas"][:3].mean(0)).abs().max()) > 1e-3  # the fit moved the shape
    # a group's shape does not depend on the other groups of the batch
    alone = fitter.fit_shared_shape(select_persons(inputs, [0, 1, 2]), *(v[:3] for v in fits.values()), groups[:3])
    np.testing.assert_allclose(alone.numpy(), betas[:3].numpy(), atol=1e-4)


def test_with_no_shape_fit_steps_a_group_gets_the_mean_of_its_fits(smpl_body):
    config = FitConfig.preset("humanm3")
    config.tracking.shape_fit_iterations = 0
    lazy = build_fitter(smpl_body, config, device="cpu", seed=0)
    frames = _fitted_frames(smpl_body, lazy, [_standing()], 2)
    inputs = stack_inputs([frames[0][0], frames[1][0]])
    fits = [torch.cat([getattr(frames[f][1], name) for f in range(2)])
            for name in ("global_orient", "body_pose", "betas", "transl")]
    betas = lazy.fit_shared_shape(inputs, *fits, torch.tensor([0, 0]))
    np.testing.assert_allclose(betas.numpy(), fits[2].mean(0, keepdim=True).expand(2, -1).numpy(), atol=1e-6)


def test_stack_inputs_refuses_frames_with_different_sensor_origins(smpl_body):
    frame = _frame(smpl_body, [_standing()], 0)
    one = FitInputs.from_observations(frame.persons, frame.camera, frame.T_cam_lidar)
    moved = np.array(frame.T_cam_lidar, dtype=np.float64)
    moved[0, 3] += 0.2
    other = FitInputs.from_observations(frame.persons, frame.camera, moved)
    with pytest.raises(ValueError, match="sensor origins"):
        stack_inputs([one, other])


def test_a_person_the_image_cuts_off_is_not_fused_into_its_track_shape(smpl_body, fitter):
    camera = _frame(smpl_body, [_standing()], 0).camera
    assert cut_off_by_image([0.0, 50.0, 100.0, 200.0], camera, 2.0)  # touches the left edge
    assert cut_off_by_image([500.0, 50.0, 140.0, 200.0], camera, 2.0)  # reaches the right edge (640 px)
    assert not cut_off_by_image([100.0, 50.0, 100.0, 200.0], camera, 2.0)
    processor = FrameProcessor(PipelineConfig(), fitter)
    for f in range(3):
        frame = _frame(smpl_body, [_standing()], f)
        if f == 1:  # the same person, its box reported at the image's edge
            frame.persons[0].bbox_xywh = np.array([0.0, 40.0, 200.0, 300.0])
        outcome = processor.process_observed(frame, stamp=f / 10)
        assert bool(outcome.fit.result.valid[0])
    assert processor.tracker.tracks[0].good_frames == 2


def test_every_track_of_the_default_sequence_gets_its_true_height_within_2_cm(smpl_body):
    """The issue's measure on the bench's default sequence (5 persons walking, crossing, entering,
    waving, crouching; 60 frames at 10 Hz, humanm3 sensor) with the node's default preset: each
    track's settled shape (one shape fitted to its first 10 whole-body fits) gives the person's
    standing height within 2 cm (observed: -5, +10, -1, -2, -11 mm)."""
    from smplify3d_core.bench.sequence import run_mode
    from smplify3d_core.sim.sequence import SequenceSettings, simulate_sequence

    frames = simulate_sequence(smpl_body, SequenceSettings(), progress=False)
    report = run_mode(smpl_body, FitConfig.preset("facing"), frames, warm_start=True, device="cpu", seed=0)
    errors = report["shape_height_error_mm"]
    assert sorted(errors) == ["p0", "p1", "p2", "p3", "p4"]
    assert all(abs(e) < 20.0 for e in errors.values()), errors
