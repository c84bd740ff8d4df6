"""`smplify3d eval` end to end on look-alike HumanM3, SLOPER4D and demo folders; bad inputs."""
import json
import shutil

import numpy as np
import pytest
import torch

from smplify3d_core.body.model import SMPLBody
from smplify3d_core.body.tables import body_tables
from smplify3d_core.cli import main
from smplify3d_core.eval.io import write_pcd
from smplify3d_core.eval.registry import open_dataset
from lookalike import (
    write_demo_lookalike,
    write_humanm3_lookalike,
    write_published_demo_lookalike,
    write_sloper4d_lookalike,
)
from smplify3d_core.eval.metrics import mpjpe, pa_mpjpe, score_against_truth

QUICK = "stage1: {iterations: 10}\nstage2: {iterations: 30}\nstage3: {iterations: 10}\n"


@pytest.fixture(scope="module")
def quick_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "quick.yaml"
    path.write_text(QUICK)
    return path


@pytest.fixture(scope="module")
def humanm3_root(tmp_path_factory, smpl_body):
    return write_humanm3_lookalike(tmp_path_factory.mktemp("hm3"), smpl_body, sequences=("basketball1", "plaza"),
                                   frames=2, persons=2, seed=10)


def _body(body_model_dir, gender="neutral"):
    return SMPLBody.from_path(body_model_dir, gender=gender)


def _meshes(body, hmr_list, key_t="global_t"):
    with torch.no_grad():
        out = body(*(torch.tensor(np.array([h[k] for h in hmr_list]), dtype=torch.float32)
                     for k in ("global_orient", "body_pose", "betas", key_t)))
    return out.vertices.double().numpy(), out.joints.double().numpy()


def _saved_results(out, reader):
    """(frame, annotation, cache person) triples from the per-frame files of an eval run."""
    items = []
    for ref in reader.frames():
        smpl_file = out / ref.sequence / f"smpl_{ref.frame_id}.json"
        if not smpl_file.is_file():
            continue
        frame, _ = reader.load_frame(ref)
        cache = json.loads((out / ref.sequence / f"frame_{ref.frame_id}.json").read_text())
        by_id = {p["tracking_id"]: p for p in cache["persons"]}
        for annotation in json.loads(smpl_file.read_text())["annotations"]:
            if annotation["valid"]:
                items.append((frame, annotation, by_id[annotation["idx"]]))
    return items


def test_eval_humanm3_layout_improves_and_matches_direct_metrics(tmp_path, humanm3_root, quick_config, smpl_body, capsys):
    out = tmp_path / "out"
    args = ["eval", "--dataset", "humanm3", "--data", str(humanm3_root), "--preset", str(quick_config),
            "--out", str(out), "--device", "cpu", "--no-progress", "--pck"]
    assert main(args) == 0
    text = capsys.readouterr()
    assert "basketball2" in text.err and "missing" in text.err
    summary = json.loads((out / "metrics.json").read_text())
    combined = summary["combined"]
    assert combined["fit"]["mpjpe_mm"] < combined["init"]["mpjpe_mm"]
    assert {"mpjpe_mm", "pa_mpjpe_mm", "pck50", "auc_0_200"} <= set(combined["fit"])
    assert set(summary["sequences"]) == {"basketball1", "plaza"}
    assert (out / "per_frame_metrics.png").stat().st_size > 1000
    # recompute from the saved results and the reader's ground truth
    reader = open_dataset("humanm3", humanm3_root)
    regressor = body_tables(smpl_body.data).humanm3_regressor
    fit_errors, init_errors, pa_errors = [], [], []
    for frame, annotation, cached in _saved_results(out, reader):
        gt = next(p.pose3d for p in frame.persons if p.tracking_id == annotation["idx"])[None]
        v, _ = _meshes(smpl_body, [annotation["hmr"]])
        pred = np.einsum("jv,bvc->bjc", regressor, v)
        fit_errors.append(1000 * mpjpe(pred, gt)[0])
        pa_errors.append(1000 * pa_mpjpe(pred, gt)[0])
        vi, _ = _meshes(smpl_body, [cached["init_smpl"]], key_t="transl")
        init_errors.append(1000 * mpjpe(np.einsum("jv,bvc->bjc", regressor, vi), gt)[0])
    assert len(fit_errors) == combined["persons"] > 0
    assert np.isclose(np.mean(fit_errors), combined["fit"]["mpjpe_mm"], atol=0.05)
    assert np.isclose(np.mean(pa_errors), combined["fit"]["pa_mpjpe_mm"], atol=0.05)
    assert np.isclose(np.mean(init_errors), combined["init"]["mpjpe_mm"], atol=0.05)
    # a rerun resumes: every frame from the cache; a removed cache file is fitted again
    assert main(args) == 0
    assert f"0 fitted now, {summary['frames_evaluated']} from the cache" in capsys.readouterr().out
    (out / "plaza" / "frame_000001.json").unlink()
    assert main(args) == 0
    assert "1 fitted now" in capsys.readouterr().out
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["combined"]["fit"]["mpjpe_mm"] == pytest.approx(combined["fit"]["mpjpe_mm"])


@pytest.mark.parametrize("dataset", ["sloper4d", "demo"])
def test_eval_smpl_truth_layouts_match_direct_metrics(tmp_path, dataset, quick_config, smpl_body, body_model_dir, capsys):
    if dataset == "sloper4d":
        root = tmp_path / "slo"
        write_sloper4d_lookalike(root, _body(body_model_dir, "female"), frames=2, gender="female")
        def loader(gender):
            return _body(body_model_dir, gender)
    else:
        root = write_demo_lookalike(tmp_path / "demo", smpl_body, frames=2, persons=2, seed=4)
        loader = None
    out = tmp_path / "out"
    assert main(["eval", "--dataset", dataset, "--data", str(root), "--preset", str(quick_config), "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    combined = json.loads((out / "metrics.json").read_text())["combined"]
    assert {"pve_mm", "mpere", "mpjpe_mm", "pa_mpjpe_mm"} <= set(combined["fit"]) and "pck50" not in combined["fit"]
    reader = open_dataset(dataset, root, body_loader=loader)
    rows = []
    for frame, annotation, _ in _saved_results(out, reader):
        truth = frame.truth[annotation["idx"]]
        v, j = _meshes(smpl_body, [annotation["hmr"]])
        rows.append(score_against_truth(v, j, truth.vertices[None], truth.joints[None], smpl_body.faces))
    assert len(rows) == combined["persons"] > 0
    for key in ("pve_mm", "mpjpe_mm", "pa_mpjpe_mm"):
        assert np.isclose(np.mean([r[key][0] for r in rows]), combined["fit"][key], atol=0.05), key
    assert np.isclose(np.mean([r["mpere"][0] for r in rows]), combined["fit"]["mpere"], atol=1e-4)
    assert list((out / reader.frames()[0].sequence).glob("smpl_*.json"))


def test_eval_bad_inputs_are_named_and_the_rest_is_evaluated(tmp_path, humanm3_root, quick_config, capsys):
    root = tmp_path / "hm3"
    shutil.copytree(humanm3_root, root)
    seq = root / "test" / "basketball1"
    write_pcd(seq / "pointcloud" / "000001.pcd", np.zeros((0, 3)))                      # a frame with no points
    poses = json.loads((seq / "pose_calib" / "000000.json").read_text())
    # behind the camera
    poses["99"] = (np.tile([[-5.0, 0.0, 1.0]], (15, 1)) + np.linspace(0, 0.1, 15)[:, None]).reshape(-1).tolist()
    (seq / "pose_calib" / "000000.json").write_text(json.dumps(poses))
    next((root / "test" / "plaza" / "images" / "camera_2").glob("*.jpg")).unlink()       # image/pose count mismatch
    out = tmp_path / "out"
    assert main(["eval", "--dataset", "humanm3", "--data", str(root), "--preset", str(quick_config), "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "000001.pcd has no points" in err
    assert "pose_calib/000000.json: person '99' is not in the image" in err
    assert "images/camera_2 holds 1 images but" in err and "pose_calib holds 2 pose files" in err
    assert "test/intersection is missing" in err
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["frames_evaluated"] == 1 and summary["combined"]["persons"] >= 1
    assert len(summary["issues"]) >= 5


def test_eval_computes_missing_initial_estimates_with_cliff(tmp_path, smpl_body, quick_config, capsys):
    from smplify3d_core.perception.cliff import CLIFF

    torch.manual_seed(0)
    cliff = tmp_path / "cliff_res50.pt"
    torch.save({"model": {f"module.{k}": v for k, v in CLIFF("res50").state_dict().items()}}, cliff)
    root = write_demo_lookalike(tmp_path / "demo", smpl_body, frames=1, persons=1, seed=2)
    (root / "frame_000000" / "init_smpl.json").unlink()
    base = ["eval", "--dataset", "demo", "--data", str(root), "--preset", str(quick_config), "--device", "cpu", "--no-progress"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 1  # nothing to start from: reported, no metrics
    assert "no initial estimate" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "b"), "--cliff-checkpoint", str(cliff)]) == 0
    cache = json.loads((tmp_path / "b" / "demo" / "frame_000000.json").read_text())
    assert np.isfinite(cache["persons"][0]["init_smpl"]["transl"]).all()


def test_eval_and_fit_on_the_published_demo_folder(tmp_path, smpl_body, quick_config, capsys):
    """The research repository's data/demo as published: no camera.json, smpl_<frame>.json as initial estimates."""
    from smplify3d_core.sim.scene import simulate_scene

    root = write_published_demo_lookalike(tmp_path / "demo", smpl_body, persons=1, seed=5, camera_in_results=False)
    K = simulate_scene(smpl_body, persons=1, preset="humanm3", seed=5).frame.camera.K
    intrinsics = [str(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2])]
    camera_file = tmp_path / "camera.json"
    camera_file.write_text(json.dumps({"camera_intrinsics": K.tolist()}))
    base = ["eval", "--dataset", "demo", "--data", str(root), "--preset", str(quick_config), "--device", "cpu", "--no-progress"]
    # no camera anywhere: reported, naming both flags; nothing evaluated
    assert main(base + ["--out", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "no camera" in err and "--intrinsics FX FY CX CY" in err and "--camera FILE" in err
    summaries = []
    for flags, out in ((["--intrinsics", *intrinsics], "a"), (["--camera", str(camera_file)], "b")):
        assert main(base + ["--out", str(tmp_path / out), *flags]) == 0
        summary = json.loads((tmp_path / out / "metrics.json").read_text())
        assert summary["frames_evaluated"] == 1 and summary["combined"]["persons"] == 1
        assert summary["truth"] == ["joints15"]  # data.pkl's pose3d: the published folder has no SMPL truth
        assert summary["combined"]["fit"]["mpjpe_mm"] < summary["combined"]["init"]["mpjpe_mm"]
        cache = json.loads((tmp_path / out / "basketball1" / "frame_1913.json").read_text())
        assert [p["tracking_id"] for p in cache["persons"]] == ["120"]
        summaries.append(summary["combined"])
    assert summaries[0]["fit"]["mpjpe_mm"] == pytest.approx(summaries[1]["fit"]["mpjpe_mm"], abs=1e-6)
    assert summaries[0]["init"]["mpjpe_mm"] == pytest.approx(summaries[1]["init"]["mpjpe_mm"], abs=1e-6)
    capsys.readouterr()
    # a rerun resumes from the cache only with the same camera
    assert main(base + ["--out", str(tmp_path / "a"), "--intrinsics", *intrinsics]) == 0
    assert "0 fitted now, 1 from the cache" in capsys.readouterr().out
    other = [str(K[0, 0] * 1.05), str(K[1, 1] * 1.05), intrinsics[2], intrinsics[3]]
    assert main(base + ["--out", str(tmp_path / "a"), "--intrinsics", *other]) == 0
    assert "1 fitted now, 0 from the cache" in capsys.readouterr().out
    # the same flags on `fit`; without a camera it stops with the same advice
    assert main(["fit", "--data", str(root), "--out", str(tmp_path / "fit_none"), "--preset", str(quick_config)]) == 2
    err = capsys.readouterr().err
    assert "--intrinsics FX FY CX CY" in err and "--camera FILE" in err
    out = tmp_path / "fit"
    assert main(["fit", "--data", str(root), "--out", str(out), "--preset", str(quick_config), "--device", "cpu",
                 "--intrinsics", *intrinsics]) == 0
    result = json.loads((out / "smpl_1913.json").read_text())
    assert [a["idx"] for a in result["annotations"]] == ["120"]
    np.testing.assert_allclose(result["info"]["camera_intrinsics"], K, atol=1e-9)


def test_tracked_eval_runs_a_sequence_as_the_node_does(tmp_path, smpl_body, quick_config, capsys):
    """`eval --tracked` feeds a HumanM3-layout sequence in order through the tracked frame path: the
    walkers keep their track ids, later frames are warm-started, the motion metrics are reported,
    and the fits improve on the image-only estimates like the per-frame evaluation's."""
    from smplify3d_core.sim.presets import get_preset

    small = get_preset("humanm3").with_changes(name="small", image_width=640, image_height=360, focal_px=470.0,
                                               lidar_beams=64, lidar_azimuth_res_deg=0.25, background_objects=0,
                                               distance_range=(4.0, 7.0))
    root = write_humanm3_lookalike(tmp_path / "hm3", smpl_body, sequences=("basketball1",), frames=6, persons=2,
                                   seed=3, preset=small, moving_people=True)
    out = tmp_path / "out"
    assert main(["eval", "--dataset", "humanm3", "--data", str(root), "--out", str(out), "--preset", str(quick_config),
                 "--tracked", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["mode"] == "tracked" and summary["frames_evaluated"] == 6 and summary["frames_from_cache"] == 0
    motion = summary["sequences"]["basketball1"]["motion"]
    assert motion["fits"] == 12 and motion["id_switches"] == 0
    assert motion["warm_started_fraction"] >= 0.5  # every frame after the first (and its restarts aside)
    assert np.isfinite(motion["accel_error_mm"]) and motion["accel_error_mm"] > 0
    # the fitted pelvis, mm (≈ 135 with the quick schedule); the image-only depths are up to metres off
    assert 0 < motion["root_error_mm"] < 200
    combined = summary["combined"]
    assert combined["persons"] == 12 and combined["fit"]["mpjpe_mm"] < combined["init"]["mpjpe_mm"]
    assert "identity switches" in printed and "root error" in printed and (out / "basketball1" / "smpl_000005.json").is_file()


def test_tracked_eval_of_demo_folders_fits_them_in_order_with_tracks(tmp_path, smpl_body, quick_config):
    """`eval --dataset demo --tracked`: the scene folders go through the tracked frame path in
    order as one sequence; the motion metrics are written next to the per-frame ones."""
    root = write_demo_lookalike(tmp_path / "demo", smpl_body, frames=3, persons=2, seed=4)
    out = tmp_path / "out"
    assert main(["eval", "--dataset", "demo", "--data", str(root), "--out", str(out), "--preset", str(quick_config),
                 "--tracked", "--no-progress"]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["mode"] == "tracked" and summary["frames_evaluated"] == 3 and summary["frames_from_cache"] == 0
    motion = summary["motion"]["demo"]  # the folders' sequence name
    assert motion["fits"] == 6 and summary["combined"]["persons"] == 6
    assert np.isfinite(motion["accel_error_mm"]) and isinstance(motion["id_switches"], int)
    # the lookalike's frames are unrelated scenes (people up to metres apart): nothing is warm-started
    assert motion["warm_started_fraction"] == 0.0
    assert summary["combined"]["fit"]["pve_mm"] < summary["combined"]["init"]["pve_mm"]


def test_tracked_eval_of_a_sloper4d_walk_tracks_in_the_world_frame(tmp_path, quick_config, body_model_dir):
    """SLOPER4D's LiDAR moves: the tracked evaluation tracks the subject in the world frame of the
    trajectory, so one walker seen from a driving rig keeps one id and is fitted warm."""
    from smplify3d_core.sim.presets import get_preset

    small = get_preset("sloper4d").with_changes(name="small", image_width=640, image_height=360, focal_px=470.0,
                                                background_objects=0)
    root = tmp_path / "slo"
    write_sloper4d_lookalike(root, _body(body_model_dir, "male"), frames=6, seed=1, preset=small, walking=True)
    out = tmp_path / "out"
    assert main(["eval", "--dataset", "sloper4d", "--data", str(root), "--out", str(out), "--preset", str(quick_config),
                 "--tracked", "--no-progress"]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    motion = summary["motion"]["seq_test"]
    assert motion["fits"] == 6 and motion["id_switches"] == 0 and motion["warm_started_fraction"] >= 0.5
    assert np.isfinite(motion["accel_error_mm"])
    combined = summary["combined"]
    assert combined["fit"]["pve_mm"] < combined["init"]["pve_mm"]
