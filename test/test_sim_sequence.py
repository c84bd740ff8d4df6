"""Simulated sequences: determinism, smooth motion, the scripted events, the moving rig, sequence folders."""
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from smplify3d_core.body.tables import body_tables
from smplify3d_core.sim.presets import get_preset
from smplify3d_core.sim.scene import PersonPlacement, simulate_scene
from smplify3d_core.sim.sequence import SequencePlan, SequenceSettings, hidden_persons, simulate_sequence

# the humanm3 camera's field of view with a quarter of its pixels, and a sparse LiDAR: fast frames
SMALL = get_preset("humanm3").with_changes(image_width=480, image_height=270, focal_px=350, lidar_beams=40,
                                           lidar_azimuth_res_deg=0.5)
FPS = 10.0


@pytest.fixture(scope="module")
def plan(smpl_body):
    return SequencePlan(SequenceSettings(), smpl_body)


@pytest.fixture(scope="module")
def moving_plan(smpl_body):
    return SequencePlan(SequenceSettings(moving_robot=True), smpl_body)


def _truth_arrays(item):
    truth = item.scene.frame.truth
    return {pid: np.concatenate([t.smpl.global_orient, t.smpl.body_pose, t.smpl.betas, t.smpl.transl])
            for pid, t in truth.items()}


def test_a_sequence_is_deterministic_and_a_frame_can_be_simulated_alone(smpl_body):
    settings = SequenceSettings(frames=3, preset=SMALL, seed=4)
    frames = simulate_sequence(smpl_body, settings)
    again = SequencePlan(settings, smpl_body)
    assert [f.stamp for f in frames] == [0.0, 0.1, 0.2]
    assert [f.scene.frame.frame_id for f in frames] == ["000000", "000001", "000002"]
    alone = again.simulate_frame(2)
    for a, b in ((frames[2], alone),):
        assert a.stamp == b.stamp and a.scene.frame.sequence == b.scene.frame.sequence
        np.testing.assert_array_equal(a.T_odom_cam, b.T_odom_cam)
        truth_a, truth_b = _truth_arrays(a), _truth_arrays(b)
        assert truth_a.keys() == truth_b.keys() and set(truth_a) <= set(again.person_ids)
        for pid in truth_a:
            np.testing.assert_array_equal(truth_a[pid], truth_b[pid])
        assert [p.tracking_id for p in a.scene.frame.persons] == [p.tracking_id for p in b.scene.frame.persons]
        for p, q in zip(a.scene.frame.persons, b.scene.frame.persons):
            np.testing.assert_array_equal(p.keypoints, q.keypoints)
            np.testing.assert_array_equal(p.points, q.points)
        np.testing.assert_array_equal(a.scene.frame.cloud_lidar, b.scene.frame.cloud_lidar)
        np.testing.assert_array_equal(a.scene.frame.image, b.scene.frame.image)
    # the betas stay with the ids, the truth is in the camera frame
    for pid, smpl in ((pid, t.smpl) for pid, t in frames[0].scene.frame.truth.items()):
        np.testing.assert_allclose(smpl.betas, again.betas[pid], atol=0)
    # another seed, another sequence
    other = SequencePlan(SequenceSettings(frames=3, preset=SMALL, seed=5), smpl_body)
    assert not np.allclose(other.pelvis_odom("p2", 1.0), again.pelvis_odom("p2", 1.0))


def test_people_move_smoothly_and_keep_apart(plan):
    times = np.arange(0.0, 30.0, 1.0 / FPS)  # the scripts go on past the sequence's 6 s
    ids = plan.person_ids
    pelvis = {pid: np.array([plan.pelvis_odom(pid, t) for t in times]) for pid in ids}
    for pid, track in pelvis.items():
        velocity = np.diff(track, axis=0) * FPS
        acceleration = np.diff(track, 2, axis=0) * FPS**2
        assert np.linalg.norm(velocity, axis=1).max() <= 1.6, pid
        assert np.linalg.norm(acceleration, axis=1).max() < 3.0, pid
        # the body faces where it walks
        states = [plan.person_state(pid, t) for t in times[:-1]]
        heading = np.array([s["heading"] for s in states])
        speed = np.linalg.norm(velocity[:, :2], axis=1)
        walking = speed > 0.5
        direction = np.arctan2(velocity[:, 1], velocity[:, 0])
        gap = np.abs((direction - heading + np.pi) % (2 * np.pi) - np.pi)
        assert walking.any() and gap[walking].max() < 0.15, pid
        # the pose changes by less than 0.5 rad per joint between frames
        body_pose = np.array([s["body_pose"] for s in states]).reshape(len(states), 23, 3)
        for a, b in zip(body_pose[:-1], body_pose[1:]):
            change = (Rotation.from_rotvec(b) * Rotation.from_rotvec(a).inv()).magnitude()
            assert change.max() < 0.5, pid
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            assert np.linalg.norm(pelvis[a][:, :2] - pelvis[b][:, :2], axis=1).min() >= 0.6, (a, b)


def test_the_scripted_events_happen(plan):
    events = plan.events
    crossing = events["crossing"]
    near, far = crossing["near"], crossing["far"]
    centre = int(round(crossing["time"] * FPS))
    hidden = {}
    for index in range(centre - 1, centre + 3):
        scene = plan.simulate_frame(index).scene
        ids = [p.tracking_id for p in scene.frame.persons]
        assert near in ids and far in ids  # a hidden person stays in the frame
        if far in hidden_persons(scene):
            truth = scene.frame.truth
            assert truth[near].joints[0, 2] + 1.0 <= truth[far].joints[0, 2]  # the near one hides it
            hidden[index] = len(scene.frame.persons[ids.index(far)].points)
    assert hidden, "the far person of the crossing is never hidden"
    first, last = plan.simulate_frame(0).scene, plan.simulate_frame(59).scene
    present_first = {p.tracking_id for p in first.frame.persons}
    present_last = {p.tracking_id for p in last.frame.persons}
    assert set(events["enters"]) - present_first and set(events["enters"]) & present_last
    assert set(events["leaves"]) & present_first - present_last
    # somebody waves and somebody crouches during the sequence
    names = {pid: {plan.person_state(pid, t)["pose_name"] for t in np.arange(0.0, 6.0, 0.1)} for pid in plan.person_ids}
    assert any("waving" in names[pid] for pid in events["waves"])
    assert any("crouching" in names[pid] for pid in events["crouches"])


def test_a_moving_robot_drives_while_the_people_keep_their_world_scripts(smpl_body, plan, moving_plan):
    times = np.arange(0.0, 6.0, 1.0 / FPS)
    poses = np.array([moving_plan.T_odom_cam(t) for t in times])
    speed = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1) * FPS
    np.testing.assert_allclose(speed, 0.5, atol=0.02)
    yaw = np.unwrap(np.arctan2(poses[:, 1, 2], poses[:, 0, 2]))
    assert 0.1 <= np.abs(np.diff(yaw) * FPS).max() <= 0.2
    np.testing.assert_allclose(poses[:, 2, 3], get_preset("humanm3").camera_height, atol=1e-9)  # on the ground, camera level
    still = np.array([plan.T_odom_cam(t) for t in times])
    assert np.allclose(still, still[0])
    for pid in plan.person_ids:
        for t in times[::7]:
            np.testing.assert_array_equal(moving_plan.pelvis_odom(pid, t), plan.pelvis_odom(pid, t))
    # the rendered truth (camera frame) sits where the script says, through T_odom_cam
    small = SequencePlan(SequenceSettings(preset=SMALL, moving_robot=True), smpl_body)
    item = small.simulate_frame(45)
    tables = body_tables(smpl_body.data)
    for pid, truth in item.scene.frame.truth.items():
        odom = item.T_odom_cam[:3, :3] @ truth.joints[0] + item.T_odom_cam[:3, 3]
        np.testing.assert_allclose(odom, small.pelvis_odom(pid, item.stamp), atol=1e-6)
        # and faces its heading: the nose is ahead of the pelvis
        nose = item.T_odom_cam[:3, :3] @ (tables.coco17_regressor @ truth.vertices)[0] + item.T_odom_cam[:3, 3]
        ahead = nose[:2] - odom[:2]
        heading = small.person_state(pid, item.stamp)["heading"]
        assert ahead @ np.array([np.cos(heading), np.sin(heading)]) > 0.05, pid


def test_simulate_scene_takes_ids_background_and_pelvis_height(smpl_body):
    placements = [PersonPlacement(distance=5.0, lateral=0.3, height=0.95), PersonPlacement(distance=7.0, lateral=-1.0)]
    scene = simulate_scene(smpl_body, preset=SMALL, seed=1, placements=placements, background=[],
                           tracking_ids=["a", "b"])
    assert [p.tracking_id for p in scene.frame.persons] == ["a", "b"] and set(scene.frame.truth) == {"a", "b"}
    assert scene.background_meshes == [] and not (scene.cloud_labels == -2).any()
    pelvis = scene.frame.truth["a"].joints[0]
    np.testing.assert_allclose(pelvis, [0.3, SMALL.camera_height - 0.95, 5.0], atol=1e-9)
    with pytest.raises(ValueError, match="tracking_ids"):
        simulate_scene(smpl_body, preset=SMALL, seed=1, placements=placements, tracking_ids=["a"])


def test_cli_writes_a_sequence_folder_that_reads_back(tmp_path, capsys):
    from smplify3d_core.cli import main
    from smplify3d_core.eval.sequence_folder import SequenceFolderError, read_sequence_folder

    out = tmp_path / "seq"
    assert main(["simulate", "--frames", "2", "--persons", "3", "--seed", "2", "--moving-robot", "--no-progress",
                 "--out", str(out)]) == 0
    assert "simulated 2 frames" in capsys.readouterr().out
    index = json.loads((out / "sequence.json").read_text())
    assert index["format"] == "smplify3d-sequence-1" and index["moving_robot"] is True and index["persons"] == 3
    assert set(index["betas"]) == {"p0", "p1", "p2"}
    frames = read_sequence_folder(out)
    assert [f.index for f in frames] == [0, 1] and [f.stamp for f in frames] == [0.0, 0.1]
    for record, frame in zip(index["frames"], frames):
        assert record["folder"] == f"frames/{frame.index:06d}"
        np.testing.assert_allclose(frame.T_odom_cam, record["T_odom_cam"], atol=1e-12)
        assert set(record["persons"]) == {p.tracking_id for p in frame.frame.persons} == set(frame.frame.truth)
        for pid, smpl in record["persons"].items():
            np.testing.assert_allclose(frame.frame.truth[pid].smpl.transl, smpl["transl"], atol=1e-12)
    assert not np.allclose(frames[0].T_odom_cam, frames[1].T_odom_cam)
    # the folder evaluates through the tracked frame path: frame 1 starts warm from frame 0's tracks
    assert main(["eval", "--dataset", "sequence", "--data", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "eval_sequence" / "metrics.json").read_text())
    assert metrics["id_switches"] == 0 and metrics["persons"] >= 1 and 0 < metrics["pve_mm"] < 150
    assert [f["warm_started"] for f in metrics["frames"]] == [0, len(metrics["frames"][1]["tracks"])]
    assert "identity switches" in capsys.readouterr().out
    index["format"] = "something-else"
    (out / "sequence.json").write_text(json.dumps(index))
    with pytest.raises(SequenceFolderError, match="format 'something-else' is not 'smplify3d-sequence-1'"):
        read_sequence_folder(out)
    with pytest.raises(SequenceFolderError, match="no sequence.json"):
        read_sequence_folder(tmp_path)
