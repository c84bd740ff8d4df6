"""The fixed-lag output: one frame of delay, tracked bodies averaged with their neighbours at the frame's stamp."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from smplify3d_core.eval.motion import acceleration_error
from smplify3d_core.fit.config import FitConfig
from smplify3d_core.fit.optimizer import FitResult
from smplify3d_core.fixed_lag import FixedLagOutput, average_rotations
from smplify3d_core.models import build_fitter
from smplify3d_core.pipeline import FrameFit, FrameOutcome, FrameStatus
from smplify3d_core.pipeline_config import PipelineConfig, TrackerConfig
from smplify3d_core.tracked_fit import PersonTrack

BETAS = np.array([0.5, -0.3, 0.2, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0])


@pytest.fixture(scope="module")
def fitter(smpl_body):
    return build_fitter(smpl_body, FitConfig.preset("humanm3"), device="cpu", seed=0)


def _camera_pose(yaw: float, position) -> np.ndarray:
    """(4, 4) camera -> odom: the camera turned by ``yaw`` about odom's vertical (y) axis, at ``position``."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec([0.0, yaw, 0.0]).as_matrix()
    T[:3, 3] = position
    return T


def _outcome(fitter, stamp, T_track_cam, bodies, valid=None) -> FrameOutcome:
    """A FITTED outcome whose persons are ``bodies``: (track id, pelvis (3,) odom m, root rotvec (3,) odom,
    body pose (69,) rad), built with the body model in the camera frame of ``T_track_cam``."""
    T_cam_track = np.linalg.inv(T_track_cam)
    betas = torch.as_tensor(np.tile(BETAS, (len(bodies), 1)), dtype=torch.float32)
    orient = np.stack([(Rotation.from_matrix(T_cam_track[:3, :3]) * Rotation.from_rotvec(b[2])).as_rotvec()
                       for b in bodies])
    pelvis_cam = np.stack([T_cam_track[:3, :3] @ b[1] + T_cam_track[:3, 3] for b in bodies])
    with torch.no_grad():
        transl = torch.as_tensor(pelvis_cam, dtype=torch.float32) - fitter.rest_pelvis(betas)
        pose = torch.as_tensor(np.stack([b[3] for b in bodies]), dtype=torch.float32)
        out = fitter.body(torch.as_tensor(orient, dtype=torch.float32), pose, betas, transl)
    count = len(bodies)
    valid = torch.ones(count, dtype=torch.bool) if valid is None else torch.as_tensor(valid)
    result = FitResult(global_orient=torch.as_tensor(orient, dtype=torch.float32), body_pose=pose.clone(), betas=betas,
                       transl=transl, vertices=out.vertices, joints=out.joints,
                       reprojection_error_px=torch.zeros(count), chamfer_m2=torch.zeros(count),
                       lidar_point_count=torch.full((count,), 100), visible_parts=[[] for _ in bodies],
                       flags=[[] for _ in bodies], valid=valid, fitted=torch.ones(count, dtype=torch.bool))
    return FrameOutcome(FrameStatus.FITTED, fit=FrameFit(None, None, result),
                        tracks=[PersonTrack(b[0], stamp, warm_started=True) for b in bodies], stamp=stamp,
                        T_track_cam=T_track_cam)


def _walk(stamp, noise=np.zeros(3)):
    """A person walking along odom x at 1.2 m/s, the right elbow bending at 1 rad/s; (pelvis, root, pose)."""
    pose = np.zeros(69)
    pose[3 * 18 + 1] = 0.2 + 1.0 * stamp  # right elbow (joint 19, index 18 of the body pose)
    return np.array([1.2 * stamp, 0.9, 6.0]) + noise, np.array([0.0, 0.4 + 0.5 * stamp, 0.0]), pose


def _moving_camera(stamp):
    return _camera_pose(0.3 * stamp, [0.5 * stamp, 0.0, 0.2 * stamp])


def _output(fitter, lag=1, **changes) -> FixedLagOutput:
    config = TrackerConfig(output_lag_frames=lag, **changes)
    return FixedLagOutput(fitter, config)


def _pelvis_in_odom(outcome, k=0):
    return outcome.T_track_cam[:3, :3] @ outcome.fit.result.joints[k, 0].double().numpy() + outcome.T_track_cam[:3, 3]


def test_average_rotations_is_sign_blind_and_halves_between_two():
    z = Rotation.from_rotvec([0.0, 0.0, 0.4]).as_quat()
    minus_z = Rotation.from_rotvec([0.0, 0.0, -0.4]).as_quat()
    mean = average_rotations(np.stack([z, -minus_z]), np.array([0.5, 0.5]))  # -q is the same rotation as q
    np.testing.assert_allclose(Rotation.from_quat(mean).as_rotvec(), np.zeros(3), atol=1e-9)
    three = average_rotations(np.stack([z, z, -z]), np.array([0.25, 0.5, 0.25]))
    np.testing.assert_allclose(Rotation.from_quat(three).as_rotvec(), [0.0, 0.0, 0.4], atol=1e-9)


def test_each_frame_comes_out_once_in_order_one_frame_late_and_the_last_at_flush(fitter):
    output = _output(fitter)
    stamps = [0.0, 0.1, 0.2, 0.3]
    released = []
    for s in stamps:
        got = output.push(_outcome(fitter, s, _moving_camera(s), [(0, *_walk(s))]), payload=s)
        # the first frame has no predecessor, so it can never be averaged and goes out at once;
        # the second waits for the third, and so on
        assert len(got) == (0 if s == 0.1 else 1)
        released += got
    assert output.holding
    released += output.flush()
    assert not output.holding and output.flush() == []
    assert [payload for _, payload in released] == stamps
    assert [outcome.stamp for outcome, _ in released] == stamps
    skipped = FrameOutcome.skipped("the point cloud has no valid points")
    assert output.push(skipped, "now") == [(skipped, "now")]  # a skip passes straight through


def test_without_lag_every_frame_comes_out_at_once_unchanged(fitter):
    output = _output(fitter, lag=0)
    outcome = _outcome(fitter, 0.1, np.eye(4), [(0, *_walk(0.1))])
    joints = outcome.fit.result.joints.clone()
    assert output.push(outcome, 1) == [(outcome, 1)] and not output.holding
    torch.testing.assert_close(outcome.fit.result.joints, joints, rtol=0, atol=0)
    with pytest.raises(ValueError, match="0 or 1"):
        _output(fitter, lag=2)


def test_the_average_follows_a_steady_walk_from_a_moving_robot_at_uneven_gaps_and_halves_the_noise(fitter):
    output = _output(fitter)
    stamps = [0.0, 0.1, 0.3]  # uneven: the neighbours are interpolated at the middle frame's stamp
    jitter = np.array([0.04, -0.02, 0.03])
    outcomes = [_outcome(fitter, s, _moving_camera(s), [(3, *_walk(s, jitter if s == 0.1 else np.zeros(3)))])
                for s in stamps]
    raw_pose = outcomes[1].fit.result.body_pose.clone()
    output.push(outcomes[0])
    output.push(outcomes[1])
    (middle, _), = output.push(outcomes[2])
    assert middle is outcomes[1]
    true_pelvis = _walk(0.1)[0]
    # half of the jitter is left (weight 1/2 on the frame, the neighbours' interpolation is exact)
    np.testing.assert_allclose(_pelvis_in_odom(middle), true_pelvis + 0.5 * jitter, atol=2e-4)
    result = middle.fit.result
    root_odom = Rotation.from_matrix(middle.T_track_cam[:3, :3]) * Rotation.from_rotvec(result.global_orient[0].double().numpy())
    np.testing.assert_allclose(root_odom.as_rotvec(), _walk(0.1)[1], atol=2e-4)  # linear in time: exact
    elbow = 3 * 18 + 1
    assert float(result.body_pose[0, elbow]) == pytest.approx(0.3, abs=2e-4)
    assert float(raw_pose[0, elbow]) == pytest.approx(0.3, abs=1e-6)
    # the mesh is that of the averaged parameters
    with torch.no_grad():
        again = fitter.body(result.global_orient[:1], result.body_pose[:1], result.betas[:1], result.transl[:1])
    torch.testing.assert_close(again.vertices, result.vertices[:1], rtol=0, atol=1e-5)


def test_jittery_fits_lose_most_of_their_acceleration_error(fitter):
    rng = np.random.default_rng(7)
    stamps = [f / 10 for f in range(20)]
    output = _output(fitter)
    predicted, truth, raw = {"p": {}}, {"p": {}}, {"p": {}}
    released = []
    for f, s in enumerate(stamps):
        outcome = _outcome(fitter, s, _moving_camera(s), [(1, *_walk(s, rng.normal(0.0, 0.02, 3)))])
        raw["p"][f] = _pelvis_in_odom(outcome)[None] * 1000.0
        truth["p"][f] = _walk(s)[0][None] * 1000.0
        released += output.push(outcome, f)
    released += output.flush()
    for outcome, f in released:
        predicted["p"][f] = _pelvis_in_odom(outcome)[None] * 1000.0
    assert acceleration_error(predicted, truth) < 0.5 * acceleration_error(raw, truth)


def test_bodies_without_both_neighbours_or_past_a_gap_or_invalid_stay_as_fitted(fitter):
    def pelvis_after(frames, **changes):
        output = _output(fitter, **changes)
        released = []
        for outcome in frames:
            released += output.push(outcome)
        released += output.flush()
        return [_pelvis_in_odom(o) for o, _ in released]

    jitter = np.array([0.05, 0.0, 0.0])
    T = np.eye(4)

    def frames(stamps, ids=(0, 0, 0), valid=(True, True, True)):
        return [_outcome(fitter, s, T, [(i, *_walk(s, jitter if n == 1 else np.zeros(3)))], valid=[v])
                for n, (s, i, v) in enumerate(zip(stamps, ids, valid))]

    expected_raw = _walk(0.1, jitter)[0]
    assert np.allclose(pelvis_after(frames([0.0, 0.1, 0.2]))[1], _walk(0.1)[0] + 0.5 * jitter, atol=2e-4)
    for case in (frames([0.0, 0.1, 0.6]),                           # 0.5 s to the next frame > max_warm_gap
                 frames([0.0, 0.1, 0.2], ids=(0, 0, 5)),            # the next frame has another track
                 frames([0.0, 0.1, 0.2], valid=(True, True, False)),  # the next body is not valid
                 frames([0.0, 0.1, 0.2], valid=(True, False, True))):  # the body itself is not valid
        np.testing.assert_allclose(pelvis_after(case)[1], expected_raw, atol=1e-5)
    # an average farther than max_smoothing_offset from the fit is not taken
    far = pelvis_after(frames([0.0, 0.1, 0.2]), max_smoothing_offset=0.01)[1]
    np.testing.assert_allclose(far, expected_raw, atol=1e-5)


def test_the_default_frame_path_publishes_one_frame_late():
    assert PipelineConfig().tracker.output_lag_frames == 1


def test_a_held_frame_goes_out_at_once_when_the_next_frame_is_too_far_away_to_be_its_neighbour(fitter):
    output = _output(fitter)
    output.push(_outcome(fitter, 0.9, np.eye(4), [(0, *_walk(0.9))]), "start")
    first = _outcome(fitter, 1.0, np.eye(4), [(0, *_walk(1.0))])
    assert output.push(first, "first") == [] and output.holding  # 0.1 s after its predecessor
    assert output.expect(1.2) == [] and output.holding  # 0.2 s later: it waits to be averaged
    assert output.expect(1.5) == [(first, "first")] and not output.holding  # 0.5 s > max_warm_gap
    output.push(_outcome(fitter, 1.9, np.eye(4), [(0, *_walk(1.9))]), "start again")
    output.push(_outcome(fitter, 2.0, np.eye(4), [(0, *_walk(2.0))]), "second")
    assert [p for _, p in output.expect(1.0)] == ["second"]  # time went backwards


def test_frames_slower_than_the_warm_gap_are_not_held_and_come_out_as_if_they_had_waited(fitter):
    """At 2 Hz (0.5 s > max_warm_gap 0.35 s) no frame can be averaged: each goes out at its own push,
    as fitted, which is what waiting for the next frame would have given; when the rate rises, the
    lag and the averaging return."""
    stamps = [0.0, 0.5, 1.0, 1.5, 1.6, 1.7]
    jitter = [np.array([0.03 * (-1) ** n, 0.0, 0.0]) for n in range(len(stamps))]
    output = _output(fitter)
    released = {}
    pushed = []
    for s, noise in zip(stamps, jitter):
        got = output.push(_outcome(fitter, s, np.eye(4), [(0, *_walk(s, noise))]), s)
        pushed.append([p for _, p in got])
        released.update({p: o for o, p in got})
    assert pushed == [[0.0], [0.5], [1.0], [1.5], [], [1.6]] and output.holding
    released.update({p: o for o, p in output.flush()})
    for s, noise in zip(stamps, jitter):
        if s != 1.6:  # no neighbour within the gap on one side: as fitted
            np.testing.assert_allclose(_pelvis_in_odom(released[s]), _walk(s, noise)[0], atol=1e-5)
    # 1.6 s has both neighbours 0.1 s away: averaged, its jitter cancels against theirs
    np.testing.assert_allclose(_pelvis_in_odom(released[1.6]), _walk(1.6)[0], atol=2e-4)
