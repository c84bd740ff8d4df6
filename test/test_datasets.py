"""Dataset readers (HumanM3, SLOPER4D, demo) on simulator look-alike folders, and the keypoint pre-pass."""
import json

import numpy as np
import pytest
import torch

from smplify3d_core.body.model import SMPLBody
from smplify3d_core.body.tables import body_tables
from smplify3d_core.eval.io import DatasetError, read_pcd, write_pcd
from smplify3d_core.eval.registry import open_dataset
from lookalike import (
    write_demo_lookalike,
    write_humanm3_lookalike,
    write_published_demo_lookalike,
    write_sloper4d_lookalike,
)
from smplify3d_core.eval.scene_folder import SceneFolderError, camera_options
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


def _same_persons(frame, scene):
    """The loaded persons are the simulator's (tracking ids 120 + 9 i), camera frame."""
    assert [p.tracking_id for p in frame.persons] == [str(120 + 9 * i) for i in range(len(scene.frame.persons))]
    for person, sim in zip(frame.persons, scene.frame.persons):
        np.testing.assert_allclose(person.points, sim.points, atol=1e-9)
        np.testing.assert_allclose(person.pose3d, sim.pose3d, atol=1e-9)
        np.testing.assert_allclose(person.keypoints, sim.keypoints, atol=1e-9)
        for key, value in sim.init.to_dict().items():  # the initial estimate, read from smpl_1913.json
            np.testing.assert_allclose(person.init.to_dict()[key], value, atol=1e-12, err_msg=key)


def test_demo_reader_reads_the_published_folder_with_a_given_camera(tmp_path, smpl_body):
    root = write_published_demo_lookalike(tmp_path / "demo", smpl_body, persons=2, seed=3, camera_in_results=False)
    assert sorted(p.name for p in root.iterdir()) == ["1656236223200001913.jpeg", "2d_keypoints.json", "data.pkl",
                                                      "smpl_1913.json"]
    scene = simulate_scene(smpl_body, persons=2, preset="humanm3", seed=3)
    camera = scene.frame.camera
    (ref,) = open_dataset("demo", root).frames()
    assert (ref.sequence, ref.frame_id) == ("basketball1", "1913")
    with pytest.raises(DatasetError, match=r"no camera.*--intrinsics FX FY CX CY.*--camera FILE"):
        open_dataset("demo", root).load_frame(ref)
    fx, fy, cx, cy = camera.fx, camera.fy, camera.K[0, 2], camera.K[1, 2]
    research = tmp_path / "camera_research.json"
    research.write_text(json.dumps({"camera_intrinsics": camera.K.tolist()}))
    values = tmp_path / "camera_values.json"
    values.write_text(json.dumps({"fx": fx, "fy": fy, "cx": cx, "cy": cy, "width": camera.width, "height": camera.height}))
    for options in (camera_options(intrinsics=(fx, fy, cx, cy)), camera_options(camera_file=research),
                    camera_options(camera_file=values)):
        reader = open_dataset("demo", root, camera=options)
        frame, notes = reader.load_frame(ref, load_image=True)
        assert not notes and frame.truth is None and reader.camera_name(ref) == "camera_1"
        np.testing.assert_allclose(frame.camera.K, camera.K, atol=1e-12)
        assert (frame.camera.width, frame.camera.height) == (camera.width, camera.height)  # from the image
        assert frame.image.shape == (camera.height, camera.width, 3)
        np.testing.assert_allclose(frame.T_cam_lidar, np.eye(4), atol=0)
        _same_persons(frame, scene)
    # a size that contradicts the image, both flags at once, a file without intrinsics: named
    values.write_text(json.dumps({"fx": fx, "fy": fy, "cx": cx, "cy": cy, "width": 640, "height": 480}))
    with pytest.raises(DatasetError, match="--camera .*camera_values.json says 640x480"):
        open_dataset("demo", root, camera=camera_options(camera_file=values)).load_frame(ref, load_image=True)
    with pytest.raises(ValueError, match="not both"):
        camera_options(camera_file=research, intrinsics=(fx, fy, cx, cy))
    values.write_text(json.dumps({"fx": fx, "fy": fy}))
    with pytest.raises(SceneFolderError, match="cx, cy missing"):
        camera_options(camera_file=values)
    with pytest.raises(ValueError, match="--dataset demo only"):
        open_dataset("humanm3", root, camera=camera_options(intrinsics=(fx, fy, cx, cy)))


def test_demo_reader_published_folder_camera_from_results_extrinsic_and_init_order(tmp_path, smpl_body):
    root = write_published_demo_lookalike(tmp_path / "demo", smpl_body, persons=2, seed=3, points_in_lidar_frame=True)
    scene = simulate_scene(smpl_body, persons=2, preset="humanm3", seed=3)
    T = scene.frame.T_cam_lidar
    reader = open_dataset("demo", root)
    (ref,) = reader.frames()
    frame, _ = reader.load_frame(ref)  # the camera from smpl_1913.json's info.camera_intrinsics and image size
    np.testing.assert_allclose(frame.camera.K, scene.frame.camera.K, atol=1e-12)
    assert (frame.camera.width, frame.camera.height) == (scene.frame.camera.width, scene.frame.camera.height)
    assert np.abs(frame.persons[0].points - scene.frame.persons[0].points).max() > 0.5  # still in the LiDAR frame
    np.save(tmp_path / "T.npy", T)
    np.savetxt(tmp_path / "T.txt", T)
    (tmp_path / "T.json").write_text(json.dumps({"extrinsic": T.tolist()}))
    for name in ("T.npy", "T.txt", "T.json"):
        frame, _ = open_dataset("demo", root, camera=camera_options(extrinsic_file=tmp_path / name)).load_frame(ref)
        np.testing.assert_allclose(frame.T_cam_lidar, T, atol=1e-12)
        np.testing.assert_allclose(frame.camera.K, scene.frame.camera.K, atol=1e-12)
        _same_persons(frame, scene)
    (tmp_path / "bad.json").write_text(json.dumps({"extrinsic": (2 * T).tolist()}))
    with pytest.raises(SceneFolderError, match="--extrinsic: .*bad.json is not a rigid transform"):
        camera_options(extrinsic_file=tmp_path / "bad.json")
    # this project's results layout (a list whose idx is the tracking id) reads the same
    results = json.loads((root / "smpl_1913.json").read_text())
    results["annotations"] = [dict(value, idx=tid) for tid, value in results["annotations"].items()]
    (root / "smpl_1913.json").write_text(json.dumps(results))
    options = camera_options(extrinsic_file=tmp_path / "T.npy")
    frame, _ = open_dataset("demo", root, camera=options).load_frame(ref)
    _same_persons(frame, scene)
    # init_smpl.json comes first; the results file fills the persons it does not list
    override = scene.frame.persons[0].init.to_dict()
    override["transl"] = [0.0, 0.0, 5.0]
    (root / "init_smpl.json").write_text(json.dumps({"persons": {"120": override}}))
    frame, _ = open_dataset("demo", root, camera=options).load_frame(ref)
    np.testing.assert_allclose(frame.persons[0].init.transl, [0.0, 0.0, 5.0], atol=0)
    np.testing.assert_allclose(frame.persons[1].init.transl, scene.frame.persons[1].init.transl, atol=1e-12)


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
        args = ["keypoints", "--dataset", name, "--data", str(root), "--vitpose-checkpoint", str(checkpoint),
                "--no-flip-test", "--device", "cpu"]
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
