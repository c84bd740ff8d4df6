"""Scene folders and the `smplify3d` command: make-body-model, simulate, fit, demo."""
import json
import pickle
import shutil

import numpy as np
import pytest
import smplx
import torch

from smplify3d_core.cli import main
from smplify3d_core.eval.scene_folder import SceneFolderError, read_scene_folder
from smplify3d_core.types import PinholeCamera

SCENE_FILES = {"data.pkl", "2d_keypoints.json", "image.png", "camera.json", "init_smpl.json",
               "ground_truth.json", "ground_truth_vertices.npz", "cloud.npz"}


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("scene")
    assert main(["simulate", "--out", str(out), "--persons", "3", "--seed", "1"]) == 0
    return out


def test_make_body_model_writes_files_that_smplx_loads(tmp_path, capsys):
    assert main(["make-body-model", "--out", str(tmp_path / "bm")]) == 0
    assert "6890 vertices" in capsys.readouterr().out
    for gender in ("neutral", "male", "female"):
        model = smplx.SMPL(model_path=str(tmp_path / "bm"), gender=gender)
        output = model(body_pose=torch.zeros(1, 69))
        assert output.vertices.shape == (1, 6890, 3)


def test_simulate_writes_the_scene_files(scene_dir):
    assert SCENE_FILES <= {p.name for p in scene_dir.iterdir()}
    records = pickle.loads((scene_dir / "data.pkl").read_bytes())
    assert len(records) == 3
    for record in records:
        assert set(record) >= {"sequence", "time", "tracking_id", "pose3d", "bbox2d_xywh", "human_points", "img_file"}
        assert np.asarray(record["pose3d"]).shape == (15, 3)
        assert len(record["bbox2d_xywh"]) == 4 and all(isinstance(v, int) for v in record["bbox2d_xywh"])
    keypoints = json.loads((scene_dir / "2d_keypoints.json").read_text())
    assert "camera" in keypoints and np.asarray(keypoints[records[0]["tracking_id"]]).shape == (17, 4)


def test_scene_folder_round_trip(scene_dir):
    frame = read_scene_folder(scene_dir)
    assert len(frame.persons) == 3 and frame.image.shape == (frame.camera.height, frame.camera.width, 3)
    for person in frame.persons:
        truth = frame.truth[person.tracking_id]
        assert person.init is not None and truth.vertices.shape == (6890, 3)
        # the person's points lie near its true surface, in the camera frame
        nearest = np.linalg.norm(person.points[:, None] - truth.vertices[None, ::5], axis=-1).min(1)
        assert np.median(nearest) < 0.05
        # HumanM3 joints are regressed from the true posed mesh: close to the SMPL joints
        np.testing.assert_allclose(person.pose3d[0], truth.joints[0], atol=5e-3)
    assert frame.cloud_lidar.shape[1] == 3


def test_scene_folder_without_init_and_truth_loads(tmp_path, scene_dir):
    copy = tmp_path / "bare"
    shutil.copytree(scene_dir, copy)
    for name in ("init_smpl.json", "ground_truth.json", "ground_truth_vertices.npz", "cloud.npz"):
        (copy / name).unlink()
    frame = read_scene_folder(copy)
    assert frame.truth is None and all(p.init is None for p in frame.persons)
    assert main(["fit", "--data", str(copy)]) == 2  # no initial estimates: a clear error, exit code 2


@pytest.mark.parametrize("missing", ["data.pkl", "2d_keypoints.json", "camera.json", "image.png"])
def test_missing_scene_file_is_named(tmp_path, scene_dir, missing):
    copy = tmp_path / "scene"
    shutil.copytree(scene_dir, copy)
    (copy / missing).unlink()
    with pytest.raises(SceneFolderError, match=missing.replace(".", r"\.")):
        read_scene_folder(copy)


def test_intrinsics_must_be_3x3(tmp_path, scene_dir):
    with pytest.raises(ValueError, match="3x3"):
        PinholeCamera(np.eye(4), 640, 480)
    copy = tmp_path / "scene"
    shutil.copytree(scene_dir, copy)
    camera = json.loads((copy / "camera.json").read_text())
    camera["K"] = [[500.0, 0.0, 320.0], [0.0, 500.0, 240.0]]
    (copy / "camera.json").write_text(json.dumps(camera))
    with pytest.raises(SceneFolderError, match="3x3"):
        read_scene_folder(copy)


def test_fit_command_writes_results(tmp_path, scene_dir, capsys):
    out = tmp_path / "fit"
    assert main(["fit", "--data", str(scene_dir), "--out", str(out), "--preset", "humanm3"]) == 0
    names = {p.name for p in out.iterdir()}
    frame = read_scene_folder(scene_dir, load_image=False)
    assert f"smpl_{frame.frame_id}.json" in names and f"overlay_{frame.frame_id}.png" in names
    assert sum(name.endswith(".ply") for name in names) == 3
    result = json.loads((out / f"smpl_{frame.frame_id}.json").read_text())
    assert len(result["annotations"]) == 3
    hmr = result["annotations"][0]["hmr"]
    assert len(hmr["body_pose"]) == 69 and len(hmr["betas"]) == 10 and np.asarray(hmr["joints3d"]).shape == (24, 3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pve_fit_mm"] < metrics["pve_init_mm"]


def test_demo_reports_before_and_after(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--persons", "2", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "PVE init" in printed and "stage2" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("pve_init_mm", "pve_fit_mm", "mpjpe_init_mm", "mpjpe_fit_mm", "pa_mpjpe_fit_mm", "fit_seconds", "persons"):
        assert key in metrics
    assert metrics["persons"] == 2 and np.isfinite(metrics["pve_fit_mm"])


def test_unknown_config_key_is_rejected(tmp_path, scene_dir, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage2:\n  pointcloud_wieght: 3\n")
    assert main(["fit", "--data", str(scene_dir), "--preset", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "pointcloud_wieght" in capsys.readouterr().err
