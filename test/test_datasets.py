"""Dataset readers (HumanM3, SLOPER4D, demo) on simulator look-alike folders, and the keypoint pre-pass."""
import json

import numpy as np
import pytest
import torch

from smplify3d_core.body.model import SMPLBody
from smplify3d_core.body.tables import body_tables
from smplify3d_core.eval.datasets import open_dataset, read_pcd, write_pcd
from smplify3d_core.eval.lookalike import write_demo_lookalike, write_humanm3_lookalike, write_sloper4d_lookalike
from smplify3d_core.sim.presets import get_preset
from smplify3d_core.sim.scene import simulate_scene


@pytest.fixture(scope="module")
def body_loader(body_model_dir):
    cache = {}

    def load(gender):
        if gender not in cache:
            cache[gender] = SMPLBody.from_path(body_model_dir, gender=gender)
        return cache[gender]

    return load


@pytest.fixture(scope="module")
def humanm3_root(tmp_path_factory, smpl_body):
    return write_humanm3_lookalike(tmp_path_factory.mktemp("hm3"), smpl_body, sequences=("basketball1", "plaza"),
                                   frames=1, persons=2)


@pytest.fixture(scope="module")
def sloper_root(tmp_path_factory, body_loader):
    root = tmp_path_factory.mktemp("sloper")
    write_sloper4d_lookalike(root, body_loader("male"), frames=2, gender="male")
    return root


def test_pcd_round_trip(tmp_path):
    points = np.random.default_rng(0).normal(size=(50, 3))
    assert np.allclose(read_pcd(write_pcd(tmp_path / "a.pcd", points)), points, atol=1e-6)
    assert read_pcd(write_pcd(tmp_path / "empty.pcd", np.zeros((0, 3)))).shape == (0, 3)


def test_humanm3_reader_loads_persons_points_and_world_frame_truth(humanm3_root, smpl_body):
    reader = open_dataset("humanm3", humanm3_root)
    refs = reader.frames()
    assert [(r.sequence, r.frame_id) for r in refs] == [("basketball1", "000000"), ("plaza", "000000")]
    assert any("basketball2" in m and "missing" in m for m in reader.issues)
    assert any("intersection" in m for m in reader.issues)
    calibration = json.loads((humanm3_root / "test/basketball1/camera_calibration/camera_1.json").read_text())
    extrinsic = np.asarray(calibration["extrinsic"])
    assert not np.allclose(extrinsic[:3, :3], np.round(extrinsic[:3, :3]), rtol=0, atol=1e-3)  # not axis-aligned
    assert np.linalg.norm(extrinsic[:3, 3]) > 0.1
    frame, notes = reader.load_frame(refs[0])
    # the same simulated scene, straight from the simulator
    preset = get_preset("humanm3").with_changes(lidar_rpy_deg=(0.0, 0.0, 8.0))
    scene = simulate_scene(smpl_body, persons=2, preset=preset, seed=0)
    regressor = body_tables(smpl_body.data).humanm3_regressor
    assert frame.persons, notes
    assert np.allclose(frame.T_cam_lidar, preset.T_cam_lidar, rtol=0, atol=1e-9)
    for person in frame.persons:
        truth = scene.frame.truth[person.tracking_id]
        assert np.allclose(person.pose3d, regressor @ truth.vertices, atol=1e-4)  # GT back in the camera frame
        # the cropped points lie on the person: near its true surface
        nearest = np.min(np.linalg.norm(person.points[:, None, :] - truth.vertices[None, ::7], axis=-1), axis=1)
        assert np.median(nearest) < 0.05 and len(person.points) >= 10
        sim = next(p for p in scene.frame.persons if p.tracking_id == person.tracking_id)
        assert np.allclose(person.keypoints, sim.keypoints, atol=1e-6) and person.init is not None
        x, y, w, h = person.bbox_xywh
        uv = frame.camera.project(person.pose3d)
        assert np.all((uv[:, 0] >= x - 1) & (uv[:, 0] <= x + w + 1) & (uv[:, 1] >= y - 1) & (uv[:, 1] <= y + h + 1))


def test_sloper4d_reader_truth_from_labels_gender(sloper_root, body_loader):
    reader = open_dataset("sloper4d", sloper_root, body_loader=body_loader)
    refs = reader.frames()
    assert len(refs) == 2 and not reader.issues
    frame, _ = reader.load_frame(refs[1])
    scene = simulate_scene(body_loader("male"), persons=1, preset="sloper4d", seed=1)
    truth, sim_truth = frame.truth["second_person"], scene.frame.truth["0"]
    assert np.allclose(truth.vertices, sim_truth.vertices, atol=2e-4)  # world labels -> camera frame
    assert np.allclose(truth.joints, sim_truth.joints, atol=2e-4)
    person = frame.persons[0]
    assert np.allclose(person.points, scene.frame.persons[0].points, atol=1e-6)
    assert np.allclose(person.bbox_xywh, scene.frame.persons[0].bbox_xywh, atol=1e-6)
    assert person.init is not None and (person.lidar_visibility > 0.5).sum() >= 10
    # the neutral model would give another mesh: the labels' gender is used
    neutral = body_loader("neutral")(*(torch.as_tensor(v[None], dtype=torch.float32) for v in
                                       (truth.smpl.global_orient, truth.smpl.body_pose, truth.smpl.betas, truth.smpl.transl)))
    assert np.abs(neutral.vertices[0].numpy() - truth.vertices).max() > 1e-3


def test_demo_reader_reads_scene_folders(tmp_path, smpl_body):
    write_demo_lookalike(tmp_path / "demo", smpl_body, frames=2, persons=1)
    reader = open_dataset("demo", tmp_path / "demo")
    refs = reader.frames()
    assert [r.frame_id for r in refs] == ["000000", "000001"]
    frame, _ = reader.load_frame(refs[1])
    assert frame.truth and frame.persons[0].init is not None and len(frame.persons[0].points) > 0


def test_keypoint_prepass_writes_each_layout_and_resumes(tmp_path, smpl_body, body_loader, capsys):
    from smplify3d_core.cli import main
    from smplify3d_core.perception.vitpose import build_vitpose

    torch.manual_seed(0)
    checkpoint = tmp_path / "vitpose_s.pth"
    torch.save({"meta": {"epoch": np.int64(210)}, "state_dict": build_vitpose("s").state_dict()}, checkpoint)
    hm3 = write_humanm3_lookalike(tmp_path / "hm3", smpl_body, sequences=("plaza",), frames=2, persons=1, keypoints=False)
    slo = tmp_path / "slo"
    write_sloper4d_lookalike(slo, body_loader("female"), frames=2, gender="female", keypoints=False)
    demo = write_demo_lookalike(tmp_path / "demo", smpl_body, frames=1, persons=1)
    (demo / "frame_000000" / "2d_keypoints.json").unlink()
    for name, root in (("humanm3", hm3), ("sloper4d", slo), ("demo", demo)):
        args = ["keypoints", "--dataset", name, "--data", str(root), "--vitpose", str(checkpoint), "--no-flip", "--device", "cpu"]
        assert main(args) == 0
        first = capsys.readouterr().out
        assert main(args) == 0
        second = capsys.readouterr().out
        frames = {"humanm3": 2, "sloper4d": 2, "demo": 1}[name]
        assert f"{frames} frames written, 0 already done" in first, first
        assert f"0 frames written, {frames} already done" in second, second
    pose2d = sorted((hm3 / "test/plaza/pose2d").glob("*.json"))
    assert [p.stem for p in pose2d] == ["000000", "000001"]
    payload = json.loads(pose2d[0].read_text())
    assert payload["camera"] == "camera_2"
    kp = np.asarray(next(v for k, v in payload.items() if k != "camera"))
    assert kp.shape == (17, 4) and np.isfinite(kp).all() and set(np.unique(kp[:, 3])) <= {0.0, 1.0}
    slo_kp = json.loads((slo / "seq_test" / "seq_test_keypoints.json").read_text())
    assert sorted(slo_kp["frames"]) == ["000000", "000001"] and np.asarray(slo_kp["frames"]["000000"]).shape == (17, 4)
    demo_kp = json.loads((demo / "frame_000000" / "2d_keypoints.json").read_text())
    assert np.asarray(demo_kp["0"]).shape == (17, 4)
    # the readers load what the pre-pass wrote
    reader = open_dataset("humanm3", hm3)
    frame, _ = reader.load_frame(reader.frames()[0])
    assert frame.persons and frame.persons[0].keypoints.shape == (17, 3)
