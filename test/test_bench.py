"""``smplify3d bench --quick``: the report's structure, the sweeps and the plot; the perturbations."""
import json
import math

import numpy as np
import pytest

from smplify3d_core.bench.perturb import add_point_noise, subsample_points
from smplify3d_core.bench.runs import VARIANTS, make_variants


def _finite_numbers(obj, path="report"):
    """Every number in ``obj`` (nested dicts/lists) is finite; yields the offending paths otherwise."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _finite_numbers(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _finite_numbers(value, f"{path}[{i}]")
    elif isinstance(obj, float) and not math.isfinite(obj):
        yield path


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    from smplify3d_core.cli import main

    tmp = tmp_path_factory.mktemp("bench")
    code = main(["bench", "--quick", "--no-progress", "--json", str(tmp / "b.json"), "--plot", str(tmp / "b.png")])
    assert code == 0
    return json.loads((tmp / "b.json").read_text()), tmp


def test_quick_bench_report(quick_report):
    report, tmp = quick_report
    for key in ("summary", "variants", "sweeps", "timings", "settings", "device", "torch_threads", "speed", "targets"):
        assert key in report, key
    assert report["settings"]["quick"] is True
    assert report["settings"]["scenes"] == 2 and report["settings"]["persons"] == 2
    assert isinstance(report["torch_threads"], int) and report["torch_threads"] >= 1

    summary = report["summary"]
    assert summary["persons"] == 4
    for key in ("pve", "mpjpe", "pa_mpjpe"):
        assert summary[f"{key}_init_mm"] > 0 and summary[f"{key}_fit_mm"] > 0
    assert summary["pve_ratio"] == pytest.approx(summary["pve_fit_mm"] / summary["pve_init_mm"])

    assert set(report["variants"]) == set(VARIANTS)
    for variant in report["variants"].values():
        assert variant["persons"] == 4
        assert variant["pve_fit_mm"] > 0 and variant["mpjpe_fit_mm"] > 0 and variant["pa_mpjpe_fit_mm"] > 0
    assert report["variants"]["full"]["pve_fit_mm"] == pytest.approx(summary["pve_fit_mm"])

    density = report["sweeps"]["density"]
    assert len(density) >= 2
    points = [row["mean_points_per_person"] for row in density]
    assert all(a > b for a, b in zip(points, points[1:])), points
    assert density[0]["fraction"] == 1.0 and density[0]["pve_fit_mm"] == pytest.approx(summary["pve_fit_mm"])
    noise = report["sweeps"]["noise"]
    assert len(noise) >= 2
    sigmas = [row["sigma_cm"] for row in noise]
    assert sigmas == sorted(sigmas) and sigmas[0] == 0.0
    assert all(row["pve_fit_mm"] > 0 for row in density + noise)

    timings = report["timings"]
    assert timings["frames_per_s"] > 0 and timings["persons_per_s"] > 0
    for stage in ("icp", "stage1", "stage2", "stage3"):
        assert timings["stage_seconds_mean"][stage] >= 0
    speed = report["speed"]
    assert speed["persons"] == 2 and speed["wall_s_median"] > 0 and speed["body_pass_s"] > 0
    assert speed["body_passes"] == pytest.approx(speed["wall_s_median"] / speed["body_pass_s"])
    assert set(speed["stage_seconds_median_run"]) >= {"icp", "stage1", "stage2", "stage3"}

    bad = list(_finite_numbers({k: report[k] for k in ("summary", "variants", "sweeps", "timings", "speed")}))
    assert not bad, bad
    assert (tmp / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_bench_improves_on_init(quick_report):
    report, _ = quick_report
    # a loose check of the method on the quick run; the acceptance figures come from the default run
    assert report["summary"]["pve_fit_mm"] < report["summary"]["pve_init_mm"]


def test_variants_switch_one_thing():
    from smplify3d_core.fit.config import FitConfig

    config = FitConfig.preset("humanm3")
    variants = make_variants(config)
    assert list(variants) == list(VARIANTS)
    assert variants["full"] is config
    assert variants["no_visibility_filter"].visibility_filter is False and variants["no_visibility_filter"].use_lidar
    assert variants["no_icp"].icp.enabled is False and config.icp.enabled is True
    assert variants["no_3d_term"].use_lidar is False
    assert variants["no_icp"].stage2 == config.stage2


def _frame(seed=3):
    from smplify3d_core.types import FrameObservation, PersonObservation, PinholeCamera, SMPLParams
    from smplify3d_core.sim.presets import get_preset

    preset = get_preset("humanm3")
    rng = np.random.default_rng(seed)
    persons = []
    for i, count in enumerate((200, 37)):
        points = rng.normal(0.0, 0.3, size=(count, 3)) + np.array([i - 0.5, 0.0, 6.0])
        keypoints = np.column_stack([rng.uniform(800, 1100, size=(17, 2)), np.full(17, 0.9)])
        persons.append(PersonObservation(str(i), np.array([800, 300, 300, 600.0]), keypoints, np.ones(17), points,
                                         SMPLParams.zeros()))
    camera = PinholeCamera(preset.K, preset.image_width, preset.image_height)
    return FrameObservation("t", "000000", camera, preset.T_cam_lidar, persons)


def test_subsample_points_is_deterministic_and_keeps_a_subset():
    frame = _frame()
    a = subsample_points(frame, 0.25, np.random.default_rng(1))
    b = subsample_points(frame, 0.25, np.random.default_rng(1))
    assert [len(p.points) for p in a.persons] == [50, 9]
    for pa, pb, original in zip(a.persons, b.persons, frame.persons):
        np.testing.assert_array_equal(pa.points, pb.points)
        # every kept point is one of the original points
        assert all((np.abs(original.points - q).sum(1) == 0).any() for q in pa.points)
        assert pa.lidar_visibility.shape == (17,)
    full = subsample_points(frame, 1.0, np.random.default_rng(1))
    np.testing.assert_array_equal(full.persons[0].points, frame.persons[0].points)
    with pytest.raises(ValueError):
        subsample_points(frame, 0.0, np.random.default_rng(1))


def test_ray_noise_moves_points_along_the_ray():
    frame = _frame()
    origin = frame.T_cam_lidar[:3, 3]
    noisy = add_point_noise(frame, 0.05, np.random.default_rng(2), mode="ray")
    for before, after in zip(frame.persons, noisy.persons):
        ray = before.points - origin
        shift = after.points - before.points
        cross = np.linalg.norm(np.cross(ray, shift), axis=1) / np.linalg.norm(ray, axis=1)
        assert np.allclose(cross, 0.0, atol=1e-9)
        assert 0.03 < np.std(np.linalg.norm(after.points - origin, axis=1) - np.linalg.norm(ray, axis=1)) < 0.07
    iso = add_point_noise(frame, 0.05, np.random.default_rng(2), mode="iso")
    assert 0.03 < np.std(iso.persons[0].points - frame.persons[0].points) < 0.07
    same = add_point_noise(frame, 0.0, np.random.default_rng(2))
    np.testing.assert_array_equal(same.persons[1].points, frame.persons[1].points)


def test_sequence_bench_runs_cold_and_tracked_on_the_same_frames(smpl_body, capsys):
    """``smplify3d bench --sequence`` on a short, small-image sequence: both modes, the issue's keys."""
    from smplify3d_core.bench.report import clean_json
    from smplify3d_core.bench.sequence import print_sequence_report, run_sequence_bench
    from smplify3d_core.fit.config import FitConfig
    from smplify3d_core.sim.presets import get_preset
    from smplify3d_core.sim.sequence import SequenceSettings

    small = get_preset("humanm3").with_changes(name="small", image_width=640, image_height=360, focal_px=470.0,
                                               lidar_beams=64, lidar_azimuth_res_deg=0.25)
    settings = SequenceSettings(persons=2, frames=5, preset=small, seed=0)
    report = run_sequence_bench(smpl_body, FitConfig.preset("humanm3"), settings, progress=False)
    json.dumps(clean_json({"sequence": report}), allow_nan=False)
    for mode in ("cold", "tracked"):
        row = report[mode]
        for key in ("seconds_per_frame", "pve_mm", "mpjpe_mm", "pa_mpjpe_mm", "accel_error_mm", "id_switches", "persons"):
            assert key in row, (mode, key)
        assert row["persons"] >= 1 and row["id_switches"] == 0
        assert 0 < row["pve_mm"] < 150 and row["seconds_per_frame"] > 0
    assert report["cold"]["warm_started_fraction"] == 0.0
    assert report["tracked"]["warm_started_fraction"] > 0.5  # every person after its first frame
    assert report["cold"]["person_frames"] == report["tracked"]["person_frames"]
    assert set(report["targets"]) >= {"speed_met", "pve_met", "accel_met", "id_switches_met"}
    assert report["settings"]["output_lag_frames"] == 1  # the tracked mode publishes through the fixed-lag output
    assert report["tracked"]["output_lag_frames"] == 1 and report["cold"]["output_lag_frames"] == 0
    assert report["settled_frames"]["frames"] == 0  # 5 frames: no track has fused its 10 shapes yet
    print_sequence_report(report)
    assert "tracked output lag 1 frame(s)" in capsys.readouterr().out


def test_the_settled_frame_speed_compares_the_modes_on_the_frames_where_every_shape_was_held():
    from smplify3d_core.bench.sequence import settled_frame_speed

    def frame(index, seconds, persons, held):
        return {"index": index, "seconds": seconds, "tracks": {str(p): p for p in range(persons)}, "shape_held": held}

    cold = {"frames": [frame(i, 1.0 + i, 2, 0) for i in range(5)]}
    tracked = {"frames": [frame(0, 0.9, 2, 0), frame(1, 0.6, 2, 1), frame(2, 0.2, 2, 2), frame(3, 0.4, 1, 1),
                          frame(4, 0.1, 0, 0)]}
    steady = settled_frame_speed(cold, tracked)
    assert steady["frames"] == 2  # frames 2 and 3; frame 1 has a fusing shape, frame 4 nobody
    assert steady["tracked_seconds_per_frame"] == pytest.approx(0.3, abs=1e-12)
    assert steady["cold_seconds_per_frame"] == pytest.approx(3.5, abs=1e-12)
    assert steady["speed_ratio"] == pytest.approx(0.3 / 3.5, abs=1e-12)
    assert np.isnan(settled_frame_speed(cold, {"frames": tracked["frames"][:2]})["speed_ratio"])


# ---------------------------------------------------------------------------- bench --pipeline
def _small_pipeline_settings(**changes):
    from smplify3d_core.bench.pipeline import COMBINATIONS, PipelineBenchSettings
    from smplify3d_core.sim.presets import get_preset

    small = get_preset("humanm3").with_changes(name="small", image_width=640, image_height=360, focal_px=470.0,
                                               lidar_beams=64, lidar_azimuth_res_deg=0.25)
    return PipelineBenchSettings(persons=2, frames=2, preset=small, combinations=COMBINATIONS[:1], **changes)


def _short_fit_config():
    import dataclasses

    from smplify3d_core.fit.config import FitConfig

    config = FitConfig.preset("humanm3")
    return dataclasses.replace(config, stage1=dataclasses.replace(config.stage1, iterations=5),
                               stage2=dataclasses.replace(config.stage2, iterations=15),
                               stage3=dataclasses.replace(config.stage3, iterations=5))


@pytest.fixture(scope="module")
def pipeline_report(smpl_body):
    """``bench --pipeline --quick`` on a small image: 2 persons, 2 frames, ViTPose-S + CLIFF-Res50."""
    from smplify3d_core.bench.pipeline import run_pipeline_bench

    return run_pipeline_bench(smpl_body, _short_fit_config(), _small_pipeline_settings(), progress=False)


def _check_stages(stages):
    from smplify3d_core.bench.pipeline import STAGES

    assert set(stages) == set(STAGES) | {"total"}
    measured = sum(stages[k] for k in ("proposals", "keypoints", "initial_smpl", "fit"))
    assert all(stages[k] >= 0 for k in STAGES if k != "other")
    assert measured <= stages["total"] + 1e-9, stages
    assert stages["other"] >= -1e-9 and sum(stages[k] for k in STAGES) == pytest.approx(stages["total"], abs=1e-9)


def test_pipeline_bench_times_every_stage_of_the_frame(pipeline_report):
    report = json.loads(json.dumps(pipeline_report))  # JSON-ready as it is
    for key in ("device", "torch_threads", "persons", "flip_test", "rows"):
        assert key in report, key
    assert report["persons"] == 2 and report["flip_test"] is False and report["network_outputs"] == "random"
    (row,) = report["rows"]
    assert (row["vitpose"], row["cliff"]) == ("S", "res50")
    for kind in ("cold", "tracked"):
        _check_stages(row[kind])
    cold = row["cold"]
    assert cold["keypoints"] > 0 and cold["initial_smpl"] > 0 and cold["fit"] > 0  # ViTPose and CLIFF ran
    assert row["frames_per_second"] == pytest.approx(1.0 / row["tracked"]["total"])
    assert row["persons_fitted"] == [2, 2]
    # random outputs: the fits (nearly always) fail the verdict, so the tracked frame's persons are fitted cold again
    assert row["warm_fits"] + row["cold_fits"] == 2 and row["cold_fits"] >= 1
    assert row["tracked"]["initial_smpl"] > 0  # CLIFF ran again for those


def test_pipeline_bench_with_simulated_outputs_tracks_warm(smpl_body):
    """The networks still run in full, but the fit gets the simulator's outputs: the tracked persons start warm
    and CLIFF does not run for them."""
    from smplify3d_core.bench.pipeline import run_pipeline_bench

    report = run_pipeline_bench(smpl_body, _short_fit_config(), _small_pipeline_settings(network_outputs="simulated"),
                                progress=False)
    (row,) = report["rows"]
    _check_stages(row["tracked"])
    assert row["cold"]["initial_smpl"] > 0 and row["tracked"]["keypoints"] > 0
    assert row["warm_fits"] >= 1 and row["warm_fits"] + row["cold_fits"] == 2
    if row["cold_fits"] == 0:
        assert row["tracked"]["initial_smpl"] == 0.0


def test_pipeline_bench_command_quick_writes_the_report(pipeline_report, tmp_path, monkeypatch, capsys):
    """``smplify3d bench --pipeline --quick --json``: one combination, 3 frames, flip test off, the table and the JSON."""
    from smplify3d_core.bench import pipeline
    from smplify3d_core.cli import main

    asked = {}

    def fake_run(body, fit_config, settings, device="cpu", progress=True):
        asked["settings"] = settings
        return pipeline_report

    monkeypatch.setattr(pipeline, "run_pipeline_bench", fake_run)
    code = main(["bench", "--pipeline", "--quick", "--no-progress", "--device", "cpu", "--json", str(tmp_path / "p.json")])
    assert code == 0
    settings = asked["settings"]
    assert settings.combinations == (("s", "res50"),) and settings.frames == 3 and settings.persons == 5
    assert settings.flip_test is False and settings.network_outputs == "random"
    out = json.loads((tmp_path / "p.json").read_text())["pipeline"]
    assert out["rows"][0]["cold"].keys() == pipeline_report["rows"][0]["cold"].keys()
    printed = capsys.readouterr().out
    assert "flip test off" in printed and "tracked" in printed and "Res50" in printed
