"""The tracker: ids through motion, crossings and occlusions, births and deaths, a moving robot."""
import numpy as np
import pytest

from smplify3d_core.eval.motion import acceleration_error, acceleration_errors, identity_switches, root_error
from smplify3d_core.pipeline_config import TrackerConfig
from smplify3d_core.tracking import Detection, FittedBody, PersonTracker, box_iou


def _body(pelvis, valid=True, pose=None):
    return FittedBody(valid=valid, pelvis=np.asarray(pelvis, dtype=float), root_rotation=np.eye(3),
                      body_pose=np.zeros(69) if pose is None else np.asarray(pose, dtype=float), betas=np.zeros(10))


def _box(x):
    return np.array([x, 100.0, 60.0, 160.0])


def _step(tracker, stamp, positions, boxes=None):
    """One frame: detections at ``positions`` (None: no points), each fitted exactly there."""
    boxes = boxes or [_box(100 * i) for i in range(len(positions))]
    detections = [Detection(None if p is None else np.asarray(p, dtype=float), b) for p, b in zip(positions, boxes)]
    tracker.begin_frame(stamp)
    matches = tracker.associate(detections, stamp)
    bodies = [None if p is None else _body(p) for p in positions]
    return tracker.update(stamp, detections, matches, bodies)


def test_ids_follow_walking_people_and_a_newcomer_is_born():
    tracker = PersonTracker(TrackerConfig())
    assert _step(tracker, 0.0, [[0, 0, 5], [2, 0, 7]]) == [0, 1]
    assert tracker.births == [0, 1]
    for t in range(1, 10):  # both walk at 1.2 m/s, listed in swapped order
        ids = _step(tracker, t / 10, [[2 - 0.12 * t, 0, 7], [0.12 * t, 0, 5]])
        assert ids == [1, 0]
    ids = _step(tracker, 1.0, [[0.12 * 10, 0, 5], [8, 0, 9], [2 - 1.2, 0, 7]])
    assert ids == [0, 2, 1] and tracker.births == [2]


def test_ids_hold_through_a_crossing_with_five_frames_of_full_occlusion():
    """Two people walk towards each other at different depths; the far one is hidden (no detection at
    all) for 5 frames while they cross; both keep their ids and nobody is born."""
    tracker = PersonTracker(TrackerConfig())
    near = lambda t: np.array([-3.0 + 1.3 * t, 0.0, 5.0])  # noqa: E731
    far = lambda t: np.array([3.0 - 1.2 * t, 0.0, 7.0])  # noqa: E731
    ids_near, ids_far = set(), set()
    for f in range(50):
        t = f / 10
        hidden = 20 <= f < 25
        positions = [near(t)] if hidden else [near(t), far(t)]
        ids = _step(tracker, t, positions)
        ids_near.add(ids[0])
        if not hidden:
            ids_far.add(ids[1])
    assert ids_near == {0} and ids_far == {1}
    assert sorted(tracker.tracks) == [0, 1]


def test_an_occluded_person_with_a_box_but_no_points_keeps_its_id_by_the_box():
    tracker = PersonTracker(TrackerConfig())
    _step(tracker, 0.0, [[0, 0, 5], [2, 0, 7]], [_box(100), _box(300)])
    _step(tracker, 0.1, [[0, 0, 5], [2, 0, 7]], [_box(100), _box(300)])
    ids = _step(tracker, 0.2, [[0, 0, 5], None], [_box(100), _box(305)])
    assert ids == [0, 1]
    assert not tracker.births


def test_tracks_die_after_max_age_and_ids_are_never_reused():
    tracker = PersonTracker(TrackerConfig(max_age=0.5))
    _step(tracker, 0.0, [[0, 0, 5], [3, 0, 8]])
    _step(tracker, 0.3, [[0, 0, 5]])
    assert sorted(tracker.tracks) == [0, 1]
    tracker.begin_frame(0.6)
    assert tracker.deaths == [1] and sorted(tracker.tracks) == [0]
    assert _step(tracker, 0.7, [[0, 0, 5], [3, 0, 8]]) == [0, 2]


def test_a_node_slower_than_max_age_keeps_its_ids_and_a_track_dies_only_after_a_missed_frame():
    """Frames 1.5 s apart (a 0.67 Hz node) with max_age 1 s: a track is never ended before the frame
    that could have matched it; one that went unmatched in a frame ends at the next."""
    tracker = PersonTracker(TrackerConfig(max_age=1.0))
    for t in range(4):  # two people walking at 1 m/s, 1.5 m per frame
        assert _step(tracker, 1.5 * t, [[1.5 * t, 0, 5], [-1.5 * t, 0, 9]]) == [0, 1]
        assert tracker.deaths == []
    _step(tracker, 6.0, [[6.0, 0, 5]])  # the second person is not seen: its track misses one frame
    assert sorted(tracker.tracks) == [0, 1] and tracker.tracks[1].missed_frames == 1
    assert _step(tracker, 7.5, [[7.5, 0, 5]]) == [0] and tracker.deaths == [1]
    # with min_missed_frames 0 the old rule: every track older than max_age ends before association
    eager = PersonTracker(TrackerConfig(max_age=1.0, min_missed_frames=0))
    _step(eager, 0.0, [[0, 0, 5]])
    assert _step(eager, 1.5, [[1.5, 0, 5]]) == [1] and eager.deaths == [0]


def test_the_pose_filter_restarts_after_a_gap_longer_than_max_warm_gap():
    tracker = PersonTracker(TrackerConfig(pose_alpha=0.5, pose_beta=0.5, max_warm_gap=0.35))
    poses = [np.zeros(69), np.full(69, 0.1), np.full(69, 0.5)]
    _, filtered = _feed_poses(tracker, poses[:2], dt=0.1)
    assert float(filtered[1][0]) == pytest.approx(0.05, abs=1e-12)  # filtered: halfway to the fit
    _, slow = _feed_poses(PersonTracker(TrackerConfig(pose_alpha=0.5, pose_beta=0.5, max_warm_gap=0.35,
                                                      max_age=5.0)), poses, dt=1.0)
    np.testing.assert_allclose(slow[-1], poses[-1], atol=1e-12)  # 1 s apart: each fit taken as it is


def test_time_going_backwards_restarts_the_tracker():
    tracker = PersonTracker(TrackerConfig())
    _step(tracker, 10.0, [[0, 0, 5]])
    _step(tracker, 10.1, [[0, 0, 5]])
    assert _step(tracker, 2.0, [[0, 0, 5]]) == [1]
    assert tracker.deaths == [0]


def test_a_moving_robot_does_not_move_a_standing_person_in_the_tracking_frame():
    """Positions are given in the tracking frame: the robot drives 0.5 m/s towards a standing person,
    whose camera-frame depth shrinks, and the prediction in the camera frame follows the robot."""
    tracker = PersonTracker(TrackerConfig())
    person_odom = np.array([6.0, 0.0, 0.0])
    for f in range(10):
        t = f / 10
        T_odom_cam = np.eye(4)
        T_odom_cam[0, 3] = 0.5 * t  # the robot moves along odom x; axes kept equal for the test
        assert _step(tracker, t, [person_odom]) == [0]
    T_cam_odom = np.eye(4)
    T_cam_odom[0, 3] = -0.5
    prediction = tracker.prediction(0, 1.0, T_cam_odom)
    np.testing.assert_allclose(prediction.pelvis, [5.5, 0.0, 0.0], atol=0.02)
    assert abs(tracker.tracks[0].state[3]) < 0.05  # no velocity in odom


def test_prediction_moves_the_pelvis_with_the_tracked_velocity():
    tracker = PersonTracker(TrackerConfig())
    for f in range(8):
        _step(tracker, f / 10, [[1.2 * f / 10, 0.0, 5.0]])
    prediction = tracker.prediction(0, 0.8, np.eye(4))
    np.testing.assert_allclose(prediction.pelvis, [0.96, 0.0, 5.0], atol=0.03)
    assert tracker.prediction(0, 0.7 + TrackerConfig().max_warm_gap + 0.05, np.eye(4)) is None  # too long unseen


def test_the_track_shape_is_the_mean_of_its_valid_fits_then_held():
    tracker = PersonTracker(TrackerConfig(shape_frames=3))
    for f, beta in enumerate([1.0, 2.0, 3.0, 10.0]):
        detection = Detection(np.array([0.0, 0.0, 5.0]), _box(0))
        tracker.begin_frame(f / 10)
        matches = tracker.associate([detection], f / 10)
        body = _body([0, 0, 5])
        body.betas = np.full(10, beta)
        tracker.update(f / 10, [detection], matches, [body])
    np.testing.assert_allclose(tracker.tracks[0].shape, np.full(10, 2.0), atol=1e-9)
    assert tracker.prediction(0, 0.4, np.eye(4)).shape_settled


def test_only_fits_that_show_the_whole_person_are_fused_and_their_data_is_kept_until_the_shape_is_set():
    tracker = PersonTracker(TrackerConfig(shape_frames=2))
    for f, (beta, whole) in enumerate([(5.0, False), (1.0, True), (7.0, False), (3.0, True), (9.0, True)]):
        detection = Detection(np.array([0.0, 0.0, 5.0]), _box(0))
        tracker.begin_frame(f / 10)
        matches = tracker.associate([detection], f / 10)
        body = _body([0, 0, 5])
        body.betas, body.counts_for_shape, body.shape_data = np.full(10, beta), whole, f"frame {f}"
        tracker.update(f / 10, [detection], matches, [body])
        if f == 0:  # nothing fused yet: a warm start uses the last valid fit's betas
            np.testing.assert_allclose(tracker.prediction(0, 0.05, np.eye(4)).betas, np.full(10, 5.0), atol=1e-9)
            assert tracker.shape_fits_due() == {}
    track = tracker.tracks[0]
    assert track.good_frames == 2  # frames 1 and 3; the cut-off frames 0 and 2 and the settled frame 4 are not fused
    np.testing.assert_allclose(track.shape, np.full(10, 2.0), atol=1e-9)
    assert tracker.shape_fits_due() == {0: ["frame 1", "frame 3"]}
    tracker.set_shape(0, np.full(10, 2.5))
    np.testing.assert_allclose(track.shape, np.full(10, 2.5), atol=1e-9)
    assert tracker.shape_fits_due() == {} and track.shape_data == [] and track.shape_fitted
    tracker.restart(0)  # a restart forgets the shape and its kept data
    assert track.shape is None and not track.shape_fitted


def test_box_iou():
    assert box_iou(np.array([0, 0, 10, 10]), np.array([0, 0, 10, 10])) == pytest.approx(1.0)
    assert box_iou(np.array([0, 0, 10, 10]), np.array([5, 0, 10, 10])) == pytest.approx(50 / 150)
    assert box_iou(np.array([0, 0, 10, 10]), np.array([20, 0, 10, 10])) == 0.0


def test_acceleration_error_and_identity_switches():
    truth = {0: np.zeros((2, 3)), 1: np.ones((2, 3)), 2: 2 * np.ones((2, 3)), 4: np.zeros((2, 3))}
    jitter = {k: v.copy() for k, v in truth.items()}
    jitter[1] = jitter[1] + np.array([0.0, 0.0, 3.0])  # a 3 mm jump in the middle frame: 2 * 3 = 6 mm/frame^2
    np.testing.assert_allclose(acceleration_errors(jitter, truth), [6.0], atol=1e-12)
    assert acceleration_error({"a": truth}, {"a": truth}) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(acceleration_error({"a": {0: np.zeros((1, 3))}}, {"a": {0: np.zeros((1, 3))}}))
    assert identity_switches([{"a": 0, "b": 1}, {"a": 0}, {"a": 1, "b": 1}, {"a": 1, "b": 2}]) == 2


def test_root_error_is_the_mean_pelvis_distance_over_frames_in_both():
    truth = {"a": {0: np.zeros((2, 3)), 1: np.zeros((2, 3))}}
    predicted = {"a": {0: np.array([[3.0, 4.0, 0.0], [9.0, 9.0, 9.0]]), 1: np.zeros((2, 3)), 7: np.ones((2, 3))},
                 "b": {0: np.ones((2, 3))}}  # frame 7 and person b have no truth: not counted
    assert root_error(predicted, truth) == pytest.approx(2.5, abs=1e-12)  # (5 + 0) / 2; only joint 0 counts
    assert np.isnan(root_error({"b": {0: np.zeros((1, 3))}}, truth))


def test_a_long_unseen_track_is_extrapolated_for_one_second_and_its_gate_stays_bounded():
    """A walker unseen for 10 s is predicted where 1 s of walking takes it, and a person 4 m from there
    is not taken for it (the gate grows to three times max_distance at most)."""
    tracker = PersonTracker(TrackerConfig(max_age=60.0))
    for f in range(8):
        _step(tracker, f / 10, [[1.2 * f / 10, 0.0, 5.0]])
    np.testing.assert_allclose(tracker.predicted_pelvis(tracker.tracks[0], 10.7), [0.84 + 1.2, 0.0, 5.0], atol=0.05)
    assert _step(tracker, 10.7, [[0.84 + 1.2 + 4.0, 0.0, 5.0]]) == [1]
    assert _step(tracker, 10.8, [[0.84 + 1.2 + 0.5, 0.0, 5.0], [0.84 + 1.2 + 4.0, 0.0, 5.0]]) == [0, 1]


def _feed_poses(tracker, poses, dt=0.1):
    """One person fitted at ``poses`` (list of (69,)) at ``dt`` s intervals; returns the filtered poses."""
    filtered = []
    for t, pose in enumerate(poses):
        detection = Detection(np.array([0.0, 0.0, 5.0]), _box(0))
        tracker.begin_frame(t * dt)
        matches = tracker.associate([detection], t * dt)
        (track_id,) = tracker.update(t * dt, [detection], matches, [_body([0.0, 0.0, 5.0], pose=pose)])
        filtered.append(tracker.smoothed_body(track_id)[1])
    return track_id, filtered


def test_the_pose_filter_with_unit_gains_keeps_the_fit_and_extrapolates_its_last_change():
    tracker = PersonTracker(TrackerConfig(pose_alpha=1.0, pose_beta=1.0))
    first, second = np.zeros(69), np.full(69, 0.02)
    track_id, filtered = _feed_poses(tracker, [first, second])
    np.testing.assert_allclose(filtered[-1], second, atol=1e-12)
    prediction = tracker.prediction(track_id, 0.2, np.eye(4))
    np.testing.assert_allclose(prediction.body_pose, np.full(69, 0.04), atol=1e-12)


def test_the_pose_filter_follows_a_steady_motion_with_less_jitter_than_the_fits():
    """An elbow bending at 1 rad/s, fitted with 0.05 rad of noise per frame: the filtered pose is
    closer to the truth than the fits, its frame-to-frame acceleration smaller, and its rate
    converges to the true one (no lag on a constant-velocity motion)."""
    rng = np.random.default_rng(3)
    times = np.arange(60) * 0.1
    truth = np.zeros((60, 69))
    truth[:, 55] = 1.0 * times
    fits = truth + rng.normal(0.0, 0.05, truth.shape)
    tracker = PersonTracker(TrackerConfig())
    track_id, filtered = _feed_poses(tracker, list(fits))
    filtered = np.array(filtered)
    late = slice(20, None)
    assert np.abs(filtered[late] - truth[late]).mean() < 0.95 * np.abs(fits[late] - truth[late]).mean()
    jitter = lambda x: np.abs(np.diff(x[late], 2, axis=0)).mean()  # noqa: E731
    assert jitter(filtered) < 0.8 * jitter(fits)
    rate = tracker.tracks[track_id].pose_rate[55]
    assert rate == pytest.approx(1.0, abs=0.4)
    assert abs(np.mean(filtered[late, 55] - truth[late, 55])) < 0.03  # no lag: the motion is 0.1 rad per frame


def test_a_restart_forgets_the_pose_filter():
    tracker = PersonTracker(TrackerConfig())
    track_id, _ = _feed_poses(tracker, [np.zeros(69), np.full(69, 0.1)])
    tracker.restart(track_id)
    assert tracker.smoothed_body(track_id) is None
    assert tracker.prediction(track_id, 0.2, np.eye(4)) is None
    np.testing.assert_allclose(tracker.tracks[track_id].pose_rate, 0.0, atol=0)
