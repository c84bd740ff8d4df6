"""``smplify3d bench``: accuracy and speed over simulated scenes, ablations, LiDAR density/noise sweeps.

Parts (all on the same simulated scenes, deterministic for a seed except wall times):

1. accuracy and speed of the full method: mean PVE / MPJPE / PA-MPJPE (mm, DESIGN §8) of the
   image-only initial estimate and of the fit, the ratio PVE_fit / PVE_init, per-stage mean times,
   frames/s and persons/s;
2. ablations: the full method; no visibility filter; no ICP; no 3D term (plain image SMPLify);
3. sweeps of the LiDAR's effect: density (each person's points randomly subsampled to a fraction)
   and range noise (extra Gaussian noise along the LiDAR ray, or isotropic). The sweeps perturb the
   person points of the already simulated scenes (faster than simulating again); the per-keypoint
   LiDAR visibility flags are recomputed from the perturbed points, as the simulator computes them;
4. speed: one frame of ``--speed-persons`` persons timed after a warm-up run, with the per-stage split.

Results are printed as tables; ``--json`` writes everything, ``--plot`` the sweep figure.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

DENSITY_FRACTIONS = (1.0, 0.5, 0.25, 0.1, 0.05)
NOISE_SIGMAS_CM = (0.0, 1.0, 2.0, 5.0, 10.0)
QUICK_DENSITY_FRACTIONS = (1.0, 0.25, 0.05)
QUICK_NOISE_SIGMAS_CM = (0.0, 5.0)
VARIANTS = ("full", "no_visibility_filter", "no_icp", "no_3d_term")
VARIANT_LABELS = {
    "full": "full method",
    "no_visibility_filter": "no visibility filter",
    "no_icp": "no ICP",
    "no_3d_term": "no 3D term (image SMPLify)",
}
STAGES = ("visibility", "icp", "stage1", "stage2", "stage3")
METRIC_KEYS = ("pve", "mpjpe", "pa_mpjpe")
TARGET_PVE_RATIO = 0.55
# HumanM3 scenes (basketball, plaza, intersection) are crowded: people occlude each other, which
# is what the visibility filter is for; 4 persons per frame rarely occlude.
DEFAULT_PERSONS = 8
TARGET_SPEED_SECONDS = 3.0


# ---------------------------------------------------------------------------- configuration
def make_variants(config) -> Dict[str, object]:
    """The ablation configs, copies of ``config`` (a :class:`FitConfig`) with one switch off."""
    return {
        "full": config,
        "no_visibility_filter": dataclasses.replace(config, visibility_filter=False),
        "no_icp": dataclasses.replace(config, icp=dataclasses.replace(config.icp, enabled=False)),
        "no_3d_term": dataclasses.replace(config, use_lidar=False),
    }


def scene_seed(seed: int, index: int) -> int:
    """Seed of the ``index``-th scene of a benchmark run with ``seed``."""
    return 1000 * int(seed) + int(index)


# ---------------------------------------------------------------------------- perturbations
def _with_points(frame, new_points: List[np.ndarray], kernel_px: int):
    """A copy of ``frame`` whose persons carry ``new_points`` and LiDAR flags recomputed from them."""
    from smplify3d_core.geometry.visibility import keypoint_lidar_visibility

    persons = []
    for person, points in zip(frame.persons, new_points):
        flags = keypoint_lidar_visibility(points, person.keypoints[:, :2], frame.camera, kernel_px)
        persons.append(dataclasses.replace(person, points=points, lidar_visibility=flags))
    return dataclasses.replace(frame, persons=persons)


def subsample_points(frame, fraction: float, rng: np.random.Generator, kernel_px: int = 50):
    """Keep round(fraction · N) of each person's N points, chosen at random without replacement."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"a density fraction must be in (0, 1], got {fraction}")
    new_points = []
    for person in frame.persons:
        count = len(person.points)
        keep = int(round(fraction * count))
        if keep >= count:
            new_points.append(person.points.copy())
        else:
            index = np.sort(rng.choice(count, size=keep, replace=False))
            new_points.append(person.points[index])
    return _with_points(frame, new_points, kernel_px)


def add_point_noise(frame, sigma_m: float, rng: np.random.Generator, mode: str = "ray", kernel_px: int = 50):
    """Add N(0, sigma_m²) noise to each person's points: along the ray from the LiDAR origin
    (``mode="ray"``, range noise) or to each coordinate (``mode="iso"``)."""
    if sigma_m < 0:
        raise ValueError(f"the noise sigma must be >= 0, got {sigma_m}")
    if mode not in ("ray", "iso"):
        raise ValueError(f"noise mode must be ray or iso, got {mode!r}")
    origin = np.asarray(frame.T_cam_lidar, dtype=np.float64)[:3, 3]
    new_points = []
    for person in frame.persons:
        points = person.points
        if sigma_m == 0 or len(points) == 0:
            new_points.append(points.copy())
            continue
        if mode == "ray":
            rays = points - origin
            rays /= np.maximum(np.linalg.norm(rays, axis=1, keepdims=True), 1e-9)
            new_points.append(points + rays * rng.normal(0.0, sigma_m, size=(len(points), 1)))
        else:
            new_points.append(points + rng.normal(0.0, sigma_m, size=points.shape))
    return _with_points(frame, new_points, kernel_px)


# ---------------------------------------------------------------------------- small helpers
def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean(obj):
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating,)):
        return _finite_or_none(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, float):
        return _finite_or_none(obj)
    return obj


def _mean(values) -> float:
    values = [float(v) for v in values]
    return float(np.mean(values)) if values else float("nan")


def _summarize_rows(rows: List[dict]) -> dict:
    """Mean init/fit metrics over per-person rows."""
    out = {"persons": len(rows)}
    for key in METRIC_KEYS:
        out[f"{key}_init_mm"] = _mean(r[f"{key}_init_mm"] for r in rows)
        out[f"{key}_fit_mm"] = _mean(r[f"{key}_fit_mm"] for r in rows)
    out["pve_ratio"] = out["pve_fit_mm"] / out["pve_init_mm"] if rows and out["pve_init_mm"] > 0 else float("nan")
    return out


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not enabled, leave=False, dynamic_ncols=True)


# ---------------------------------------------------------------------------- one fit, measured
def _fit_and_measure(frame, fitter, scene_id: str) -> dict:
    """Fit ``frame``; per-person metric rows (mm) with diagnostics, the wall time and stage times."""
    import torch

    from smplify3d_core.outputs import frame_metrics
    from smplify3d_core.pipeline import fit_frame

    start = time.perf_counter()
    fit = fit_frame(frame, fitter)
    wall = time.perf_counter() - start
    metrics = frame_metrics(fit, fitter.body) or {"persons": []}
    result, inputs = fit.result, fit.inputs
    with torch.no_grad():
        init_out = fitter.body(inputs.init_global_orient, inputs.init_body_pose, inputs.init_betas, inputs.init_transl)
        init_pelvis = init_out.joints[:, 0].cpu().double().numpy()
    index = {p.tracking_id: b for b, p in enumerate(frame.persons)}
    rows = []
    for row in metrics["persons"]:
        b = index[row["tracking_id"]]
        person = frame.persons[b]
        truth_pelvis = frame.truth[person.tracking_id].joints[0]
        fit_pelvis = result.joints[b, 0].double().numpy()
        conf = person.keypoints[:, 2]
        rows.append({
            "scene": scene_id,
            "tracking_id": row["tracking_id"],
            "lidar_points": row["lidar_points"],
            "depth_m": row["depth_m"],
            "confident_keypoints": int((conf >= 0.6).sum()),
            "occluded_keypoints": int(((conf > 0) & (conf < 0.3)).sum()),
            "lidar_visible_keypoints": int((person.lidar_visibility >= 0.5).sum()),
            "pelvis_error_init_mm": float(1000 * np.linalg.norm(init_pelvis[b] - truth_pelvis)),
            "pelvis_error_fit_mm": float(1000 * np.linalg.norm(fit_pelvis - truth_pelvis)),
            **{f"{k}_{s}_mm": row[f"{k}_{s}_mm"] for k in METRIC_KEYS for s in ("init", "fit")},
            "flags": list(row["flags"]),
        })
    return {"rows": rows, "wall_s": wall, "stages": dict(result.stage_seconds), "persons": len(frame.persons)}


# ---------------------------------------------------------------------------- parts
def run_speed(body, config, preset: str, persons: int, repeats: int, device, seed: int) -> dict:
    """Time fitting one frame of ``persons`` persons (after one warm-up fit); per-stage split."""
    from smplify3d_core.pipeline import build_fitter
    from smplify3d_core.sim.scene import simulate_scene

    scene = simulate_scene(body, persons=persons, preset=preset, seed=scene_seed(seed, 999))
    fitter = build_fitter(body, config, device=device, seed=seed)
    warm = _fit_and_measure(scene.frame, fitter, "speed")
    runs = [_fit_and_measure(scene.frame, fitter, "speed") for _ in range(max(1, repeats))]
    order = np.argsort([r["wall_s"] for r in runs])
    median = runs[int(order[len(order) // 2])]
    stages = {k: float(median["stages"].get(k, 0.0)) for k in STAGES}
    stages["inputs_and_other"] = max(0.0, median["wall_s"] - sum(stages.values()))
    return {
        "persons": persons,
        "lidar_points": [int(len(p.points)) for p in scene.frame.persons],
        "warmup_wall_s": warm["wall_s"],
        "wall_s_runs": [r["wall_s"] for r in runs],
        "wall_s_median": median["wall_s"],
        "wall_s_min": min(r["wall_s"] for r in runs),
        "stage_seconds_median_run": stages,
        "target_s": TARGET_SPEED_SECONDS,
        "target_met": bool(median["wall_s"] <= TARGET_SPEED_SECONDS),
        "pve_init_mm": _mean(r["pve_init_mm"] for r in median["rows"]),
        "pve_fit_mm": _mean(r["pve_fit_mm"] for r in median["rows"]),
    }


def run_benchmark(
    body,
    config,
    preset: str = "humanm3",
    scenes: int = 10,
    persons: int = 4,
    seed: int = 0,
    device=None,
    density: Sequence[float] = DENSITY_FRACTIONS,
    noise_cm: Sequence[float] = NOISE_SIGMAS_CM,
    noise_mode: str = "ray",
    speed_persons: int = 8,
    speed_repeats: int = 3,
    progress: bool = True,
) -> dict:
    """All parts of the benchmark; returns the JSON-ready report (see module docstring)."""
    import torch

    from smplify3d_core.pipeline import build_fitter
    from smplify3d_core.sim.presets import get_preset
    from smplify3d_core.sim.scene import simulate_scene

    if scenes < 1 or persons < 1:
        raise ValueError("--scenes and --persons must be at least 1")
    sim_preset = get_preset(preset)
    kernel = sim_preset.lidar_visibility_kernel_px
    density = sorted({float(f) for f in density}, reverse=True)
    noise_cm = sorted({float(s) for s in noise_cm})
    for f in density:
        if not 0.0 < f <= 1.0:
            raise ValueError(f"density fractions must be in (0, 1], got {f}")
    if any(s < 0 for s in noise_cm):
        raise ValueError("noise sigmas must be >= 0")
    wall_start = time.perf_counter()

    # ---- speed first: its warm-up also warms the code paths for the timed accuracy loop
    speed = None
    if speed_persons and speed_persons > 0:
        speed = run_speed(body, config, preset, int(speed_persons), int(speed_repeats), device, seed)

    configs = make_variants(config)
    fitters = {name: build_fitter(body, cfg, device=device, seed=seed) for name, cfg in configs.items()}
    resolved_device = str(fitters["full"].device)

    # ---- simulate the scenes
    sim_start = time.perf_counter()
    frames = []
    with _progress(scenes, "simulate", progress) as bar:
        for i in range(scenes):
            frames.append(simulate_scene(body, persons=persons, preset=sim_preset, seed=scene_seed(seed, i)).frame)
            bar.update(1)
    sim_seconds = time.perf_counter() - sim_start
    if speed is None:  # warm-up fit, untimed
        _fit_and_measure(frames[0], fitters["full"], "warmup")

    variant_runs: Dict[str, List[dict]] = {name: [] for name in configs}
    density_runs: Dict[float, List[dict]] = {f: [] for f in density}
    noise_runs: Dict[float, List[dict]] = {s: [] for s in noise_cm}
    extra_density = [f for f in density if f < 1.0]
    extra_noise = [s for s in noise_cm if s > 0.0]
    total = scenes * (len(configs) + len(extra_density) + len(extra_noise))
    with _progress(total, "fit", progress) as bar:
        for i, frame in enumerate(frames):
            scene_id = str(scene_seed(seed, i))
            for name, fitter in fitters.items():
                variant_runs[name].append(_fit_and_measure(frame, fitter, scene_id))
                bar.update(1)
            full = variant_runs["full"][-1]
            for j, fraction in enumerate(density):
                if fraction >= 1.0:
                    run = dict(full, mean_points=_mean(len(p.points) for p in frame.persons))
                else:
                    rng = np.random.default_rng([int(seed), i, 1, j])
                    perturbed = subsample_points(frame, fraction, rng, kernel)
                    run = _fit_and_measure(perturbed, fitters["full"], scene_id)
                    run["mean_points"] = _mean(len(p.points) for p in perturbed.persons)
                    bar.update(1)
                density_runs[fraction].append(run)
            for j, sigma in enumerate(noise_cm):
                if sigma <= 0.0:
                    run = full
                else:
                    rng = np.random.default_rng([int(seed), i, 2, j])
                    perturbed = add_point_noise(frame, sigma / 100.0, rng, noise_mode, kernel)
                    run = _fit_and_measure(perturbed, fitters["full"], scene_id)
                    bar.update(1)
                noise_runs[sigma].append(run)

    # ---- accuracy and timings of the full method
    full_rows = [row for run in variant_runs["full"] for row in run["rows"]]
    summary = _summarize_rows(full_rows)
    full_runs = variant_runs["full"]
    fit_seconds = sum(r["wall_s"] for r in full_runs)
    persons_fitted = sum(r["persons"] for r in full_runs)
    timings = {
        "stage_seconds_mean": {k: _mean(r["stages"].get(k, 0.0) for r in full_runs) for k in STAGES},
        "fit_wall_s_mean": fit_seconds / len(full_runs),
        "frames_per_s": len(full_runs) / fit_seconds if fit_seconds > 0 else float("nan"),
        "persons_per_s": persons_fitted / fit_seconds if fit_seconds > 0 else float("nan"),
        "simulate_s_total": sim_seconds,
        "variant_fit_wall_s_mean": {name: _mean(r["wall_s"] for r in runs) for name, runs in variant_runs.items()},
    }
    timings["stage_seconds_mean"]["inputs_and_other"] = max(
        0.0, timings["fit_wall_s_mean"] - sum(timings["stage_seconds_mean"].values()))

    variants = {}
    for name, runs in variant_runs.items():
        rows = [row for run in runs for row in run["rows"]]
        variants[name] = {"label": VARIANT_LABELS[name], **_summarize_rows(rows),
                          "pelvis_error_fit_mm": _mean(r["pelvis_error_fit_mm"] for r in rows),
                          "fit_wall_s_mean": timings["variant_fit_wall_s_mean"][name],
                          "per_person": [{k: r[k] for k in ("scene", "tracking_id", "pve_fit_mm", "mpjpe_fit_mm",
                                                            "pa_mpjpe_fit_mm", "pelvis_error_fit_mm")} for r in rows]}

    min_points = int(config.min_lidar_points)
    density_sweep = []
    for fraction in density:
        runs = density_runs[fraction]
        rows = [row for run in runs for row in run["rows"]]
        density_sweep.append({
            "fraction": fraction,
            "mean_points_per_person": _mean(r["lidar_points"] for r in rows),
            "persons_below_min_points": int(sum(r["lidar_points"] < min_points for r in rows)),
            **{k: v for k, v in _summarize_rows(rows).items() if not k.endswith("_init_mm")},
        })
    noise_sweep = []
    for sigma in noise_cm:
        rows = [row for run in noise_runs[sigma] for row in run["rows"]]
        noise_sweep.append({
            "sigma_cm": sigma,
            "total_range_sigma_cm": math.hypot(sigma, 100.0 * sim_preset.lidar_range_noise) if noise_mode == "ray" else None,
            **{k: v for k, v in _summarize_rows(rows).items() if not k.endswith("_init_mm")},
        })

    beats = {name: bool(variants["full"]["pve_fit_mm"] < v["pve_fit_mm"]) for name, v in variants.items() if name != "full"}
    targets = {
        "pve_ratio": summary["pve_ratio"],
        "pve_ratio_target": TARGET_PVE_RATIO,
        "pve_ratio_met": bool(summary["pve_ratio"] <= TARGET_PVE_RATIO),
        "full_beats_ablation": beats,
        "full_beats_all_ablations": bool(all(beats.values())),
    }
    if speed is not None:
        targets["speed_s"] = speed["wall_s_median"]
        targets["speed_target_s"] = TARGET_SPEED_SECONDS
        targets["speed_met"] = speed["target_met"]

    return {
        "settings": {
            "scenes": scenes, "persons": persons, "preset": sim_preset.name, "seed": seed,
            "scene_seeds": [scene_seed(seed, i) for i in range(scenes)],
            "fit_config": config.to_dict(),
            "density_fractions": density, "noise_sigmas_cm": noise_cm, "noise_mode": noise_mode,
            "speed_persons": speed_persons, "speed_repeats": speed_repeats,
            "simulator_range_noise_cm": 100.0 * sim_preset.lidar_range_noise,
            "simulator_dropout": sim_preset.lidar_dropout,
            "sweep_method": ("the sweeps perturb the person points of the already simulated scenes "
                             "(not re-simulated); per-keypoint LiDAR flags are recomputed from the perturbed points"),
        },
        "device": resolved_device,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "summary": summary,
        "targets": targets,
        "variants": variants,
        "sweeps": {"density": density_sweep, "noise": noise_sweep},
        "timings": timings,
        "speed": speed,
        "diagnosis": diagnose(full_rows, variant_runs),
        "persons": full_rows,
        "wall_s": time.perf_counter() - wall_start,
    }


# ---------------------------------------------------------------------------- diagnosis
def _bin_rows(rows: List[dict], key: str, edges: Sequence[float]) -> List[dict]:
    bins = []
    for low, high in zip(edges[:-1], edges[1:]):
        selected = [r for r in rows if low <= r[key] < high]
        if not selected:
            continue
        init = _mean(r["pve_init_mm"] for r in selected)
        fit = _mean(r["pve_fit_mm"] for r in selected)
        bins.append({"range": [low, high if math.isfinite(high) else None], "persons": len(selected),
                     "pve_init_mm": init, "pve_fit_mm": fit, "pve_ratio": fit / init if init > 0 else float("nan"),
                     "pelvis_error_init_mm": _mean(r["pelvis_error_init_mm"] for r in selected),
                     "pelvis_error_fit_mm": _mean(r["pelvis_error_fit_mm"] for r in selected)})
    return bins


def diagnose(rows: List[dict], variant_runs: Dict[str, List[dict]]) -> dict:
    """Where the full method helps least: bins by LiDAR points, depth and confident keypoints,
    and the persons whose PVE improved least."""
    ranked = sorted(rows, key=lambda r: r["pve_fit_mm"] / max(r["pve_init_mm"], 1e-9), reverse=True)
    worst = [{k: r[k] for k in ("scene", "tracking_id", "lidar_points", "depth_m", "confident_keypoints",
                                 "occluded_keypoints", "lidar_visible_keypoints", "pve_init_mm", "pve_fit_mm", "pelvis_error_init_mm",
                                 "pelvis_error_fit_mm", "flags")} for r in ranked[:8]]
    ratios = np.array([r["pve_fit_mm"] / max(r["pve_init_mm"], 1e-9) for r in rows]) if rows else np.zeros(0)
    return {
        "by_points": _bin_rows(rows, "lidar_points", [0, 10, 50, 150, 400, math.inf]),
        "by_depth_m": _bin_rows(rows, "depth_m", [0, 6, 8, 10, math.inf]),
        "by_confident_keypoints": _bin_rows(rows, "confident_keypoints", [0, 9, 13, 16, 18]),
        "by_occluded_keypoints": _bin_rows(rows, "occluded_keypoints", [0, 1, 4, 18]),
        "person_pve_ratio_quantiles": ({q: float(np.quantile(ratios, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)}
                                       if len(ratios) else {}),
        "persons_worse_than_init": int((ratios > 1.0).sum()),
        "persons_above_target_ratio": int((ratios > TARGET_PVE_RATIO).sum()),
        "worst_persons": worst,
    }


# ---------------------------------------------------------------------------- output
def print_report(report: dict, out=sys.stdout) -> None:
    def p(line=""):
        print(line, file=out)

    s = report["settings"]
    p(f"smplify3d bench: {s['scenes']} scenes x {s['persons']} persons, preset {s['preset']}, seed {s['seed']}, "
      f"device {report['device']}, torch threads {report['torch_threads']} (OMP_NUM_THREADS={report['omp_num_threads_env']}), "
      f"{report['cpu_count']} CPUs")
    sm, t = report["summary"], report["timings"]
    p()
    p(f"1. Accuracy of the full method over {sm['persons']} persons (mm; MPJPE/PVE root-aligned)")
    p(f"   {'':10} {'PVE':>8} {'MPJPE':>8} {'PA-MPJPE':>9}")
    p(f"   {'init':10} {sm['pve_init_mm']:8.1f} {sm['mpjpe_init_mm']:8.1f} {sm['pa_mpjpe_init_mm']:9.1f}")
    p(f"   {'fit':10} {sm['pve_fit_mm']:8.1f} {sm['mpjpe_fit_mm']:8.1f} {sm['pa_mpjpe_fit_mm']:9.1f}")
    tg = report["targets"]
    p(f"   PVE fit/init = {sm['pve_ratio']:.3f} (target <= {TARGET_PVE_RATIO}: {'met' if tg['pve_ratio_met'] else 'NOT met'})")
    st = t["stage_seconds_mean"]
    p(f"   speed: {t['fit_wall_s_mean']:.2f} s/frame ({s['persons']} persons), {t['frames_per_s']:.2f} frames/s, "
      f"{t['persons_per_s']:.2f} persons/s; mean stage times: " + ", ".join(f"{k} {v:.2f}s" for k, v in st.items()))
    p()
    p("2. Ablations (same scenes, mean over persons, mm)")
    p(f"   {'variant':28} {'PVE':>7} {'MPJPE':>7} {'PA-MPJPE':>8} {'PVE/init':>8} {'pelvis':>7} {'s/frame':>7}")
    for name, v in report["variants"].items():
        p(f"   {v['label']:28} {v['pve_fit_mm']:7.1f} {v['mpjpe_fit_mm']:7.1f} {v['pa_mpjpe_fit_mm']:8.1f} "
          f"{v['pve_ratio']:8.3f} {v['pelvis_error_fit_mm']:7.1f} {v['fit_wall_s_mean']:7.2f}")
    p(f"   {'init (image-only estimate)':28} {sm['pve_init_mm']:7.1f} {sm['mpjpe_init_mm']:7.1f} {sm['pa_mpjpe_init_mm']:8.1f} "
      f"{1.0:8.3f} {_mean(r['pelvis_error_init_mm'] for r in report['persons']):7.1f}")
    p("   full method beats: " + ", ".join(f"{VARIANT_LABELS[k]} {'yes' if v else 'NO'}" for k, v in tg["full_beats_ablation"].items()))
    p("   (pelvis = absolute pelvis position error, mm: the depth error the LiDAR corrects)")
    p()
    p("3. Sweeps (full method; " + s["sweep_method"] + ")")
    p(f"   LiDAR density (points randomly subsampled per person; 3D term skipped below {s['fit_config']['min_lidar_points']} points)")
    p(f"   {'fraction':>8} {'points/person':>13} {'<min':>5} {'PVE':>7} {'MPJPE':>7} {'PA-MPJPE':>8}")
    for row in report["sweeps"]["density"]:
        p(f"   {row['fraction']:8.2f} {row['mean_points_per_person']:13.1f} {row['persons_below_min_points']:5d} "
          f"{row['pve_fit_mm']:7.1f} {row['mpjpe_fit_mm']:7.1f} {row['pa_mpjpe_fit_mm']:8.1f}")
    mode = "along the LiDAR ray" if s["noise_mode"] == "ray" else "isotropic"
    p(f"   range noise (extra Gaussian noise {mode}, on top of the simulator's {s['simulator_range_noise_cm']:.0f} cm)")
    p(f"   {'sigma cm':>8} {'PVE':>7} {'MPJPE':>7} {'PA-MPJPE':>8}")
    for row in report["sweeps"]["noise"]:
        p(f"   {row['sigma_cm']:8.1f} {row['pve_fit_mm']:7.1f} {row['mpjpe_fit_mm']:7.1f} {row['pa_mpjpe_fit_mm']:8.1f}")
    p(f"   init PVE for reference: {sm['pve_init_mm']:.1f} mm; no 3D term: {report['variants']['no_3d_term']['pve_fit_mm']:.1f} mm")
    sp = report.get("speed")
    if sp:
        p()
        p(f"4. Speed: one frame of {sp['persons']} persons ({s['preset']}, {sum(sp['lidar_points'])} LiDAR points), "
          f"device {report['device']}, torch threads {report['torch_threads']}")
        p(f"   warm-up {sp['warmup_wall_s']:.2f} s; timed runs " + ", ".join(f"{w:.2f}" for w in sp["wall_s_runs"]) +
          f" s; median {sp['wall_s_median']:.2f} s (target <= {TARGET_SPEED_SECONDS:.0f} s: {'met' if sp['target_met'] else 'NOT met'})")
        p("   per-stage split of the median run: " + ", ".join(f"{k} {v:.2f}s" for k, v in sp["stage_seconds_median_run"].items()))
    d = report["diagnosis"]
    p()
    p("Diagnosis (full method, per person PVE fit/init)")
    q = d["person_pve_ratio_quantiles"]
    if q:
        p("   ratio quantiles: " + ", ".join(f"{int(k * 100)}% {v:.2f}" for k, v in q.items()) +
          f"; worse than init: {d['persons_worse_than_init']}, above {TARGET_PVE_RATIO}: {d['persons_above_target_ratio']} of {sm['persons']}")
    for title, key, unit in (("LiDAR points", "by_points", ""), ("depth", "by_depth_m", " m"),
                             ("confident keypoints (conf >= 0.6)", "by_confident_keypoints", ""),
                             ("keypoints occluded by others (conf < 0.3)", "by_occluded_keypoints", "")):
        p(f"   by {title}:")
        for b in d[key]:
            high = "inf" if b["range"][1] is None else f"{b['range'][1]:g}"
            p(f"     [{b['range'][0]:g}, {high}){unit}: n={b['persons']:3d}  PVE {b['pve_init_mm']:6.1f} -> {b['pve_fit_mm']:6.1f} "
              f"(ratio {b['pve_ratio']:.2f}), pelvis {b['pelvis_error_init_mm']:6.1f} -> {b['pelvis_error_fit_mm']:6.1f}")
    p("   persons improved least: scene/id points depth conf-kp occl-kp lidar-kp PVE init->fit pelvis init->fit flags")
    for w in d["worst_persons"][:5]:
        p(f"     {w['scene']}/{w['tracking_id']} {w['lidar_points']:5d} {w['depth_m']:5.1f} {w['confident_keypoints']:3d} "
          f"{w['occluded_keypoints']:3d} {w['lidar_visible_keypoints']:3d}  {w['pve_init_mm']:6.1f} -> {w['pve_fit_mm']:6.1f}  "
          f"{w['pelvis_error_init_mm']:6.1f} -> {w['pelvis_error_fit_mm']:6.1f}  {','.join(w['flags']) or '-'}")
    p()
    p(f"total wall time {report['wall_s']:.1f} s")


def write_plot(report: dict, path) -> Path:
    """Two panels: PVE vs points per person and PVE vs range-noise sigma, init PVE dashed."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweeps, summary = report["sweeps"], report["summary"]
    no_3d = report["variants"]["no_3d_term"]["pve_fit_mm"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    density = sweeps["density"]
    x = [row["mean_points_per_person"] for row in density]
    axes[0].plot(x, [row["pve_fit_mm"] for row in density], "o-", label="full method")
    for row, xi in zip(density, x):
        axes[0].annotate(f"{row['fraction']:g}", (xi, row["pve_fit_mm"]), textcoords="offset points", xytext=(3, 5), fontsize=8)
    if all(v > 0 for v in x):
        axes[0].set_xscale("log")
    axes[0].set_xlabel("mean LiDAR points per person (subsampled)")
    axes[0].set_title("PVE vs LiDAR density")
    noise = sweeps["noise"]
    axes[1].plot([row["sigma_cm"] for row in noise], [row["pve_fit_mm"] for row in noise], "o-", label="full method")
    mode = "along ray" if report["settings"]["noise_mode"] == "ray" else "isotropic"
    axes[1].set_xlabel(f"added range noise sigma, cm ({mode})")
    axes[1].set_title("PVE vs LiDAR noise")
    for ax in axes:
        ax.axhline(summary["pve_init_mm"], color="gray", linestyle="--", label=f"init ({summary['pve_init_mm']:.0f} mm)")
        ax.axhline(no_3d, color="tab:red", linestyle=":", label=f"no 3D term ({no_3d:.0f} mm)")
        ax.set_ylabel("PVE, mm")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    s = report["settings"]
    fig.suptitle(f"smplify3d bench: {s['scenes']} scenes x {s['persons']} persons, {s['preset']}, seed {s['seed']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------- command
def _float_list(text: str) -> List[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from smplify3d_core.body.default_model import default_body_model_dir
    from smplify3d_core.body.model import SMPLBody
    from smplify3d_core.fit.config import load_fit_config

    threads = getattr(args, "threads", None)
    if threads:  # smplify3d's main() sets it too; kept so that the command also works on its own
        torch.set_num_threads(max(1, int(threads)))
    quick = bool(args.quick)
    if args.perception:
        from smplify3d_core.bench_perception import perception_bench_command
        from smplify3d_core.pipeline import resolve_device

        body = SMPLBody.from_path(args.smpl or default_body_model_dir(), gender=args.gender)
        return perception_bench_command(body, resolve_device(args.device), args.json, quick, args.seed)
    scenes = args.scenes if args.scenes is not None else (2 if quick else 10)
    persons = args.persons if args.persons is not None else (2 if quick else DEFAULT_PERSONS)
    density = args.density or (QUICK_DENSITY_FRACTIONS if quick else DENSITY_FRACTIONS)
    noise = args.noise_cm or (QUICK_NOISE_SIGMAS_CM if quick else NOISE_SIGMAS_CM)
    speed_persons = args.speed_persons if args.speed_persons is not None else (2 if quick else 8)
    speed_repeats = args.speed_repeats if args.speed_repeats is not None else (1 if quick else 3)

    config = load_fit_config(args.config or args.preset)
    body = SMPLBody.from_path(args.smpl if args.smpl else default_body_model_dir(), gender=args.gender)
    report = run_benchmark(
        body, config, preset=args.preset, scenes=scenes, persons=persons, seed=args.seed, device=args.device,
        density=density, noise_cm=noise, noise_mode=args.noise_mode, speed_persons=speed_persons,
        speed_repeats=speed_repeats, progress=not args.no_progress,
    )
    report["settings"]["quick"] = quick
    report["settings"]["config_name"] = args.config or args.preset
    report["settings"]["arguments"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    print_report(report)

    plot = args.plot
    if plot is None:
        plot = Path(args.json).with_name(Path(args.json).stem + "_sweeps.png") if args.json else Path("bench_sweeps.png")
    report["plot"] = str(write_plot(report, plot))
    print(f"wrote {report['plot']}")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_clean(report), indent=1, allow_nan=False))
        print(f"wrote {path}")
    if args.strict:
        ok = report["targets"]["pve_ratio_met"] and report["targets"]["full_beats_all_ablations"]
        ok = ok and report["targets"].get("speed_met", True)
        return 0 if ok else 1
    return 0


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``bench`` sub-command to the ``smplify3d`` parser."""
    p = subparsers.add_parser(
        "bench", help="accuracy and speed over simulated scenes, ablations, LiDAR density/noise sweeps",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scenes", type=int, default=None, help="number of simulated scenes (default 10; 2 with --quick)")
    p.add_argument("--persons", type=int, default=None, help="persons per scene (default 8, a crowded HumanM3-like scene with occlusions; 2 with --quick)")
    p.add_argument("--preset", default="humanm3", choices=("humanm3", "sloper4d"), help="simulator preset")
    p.add_argument("--config", default=None, help="fit preset or YAML (default: the fit preset named like --preset)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--json", default=None, type=Path, help="write the full report as JSON here")
    p.add_argument("--plot", default=None, type=Path,
                   help="sweep figure PNG (default: <json stem>_sweeps.png next to --json, else bench_sweeps.png)")
    p.add_argument("--seed", type=int, default=0, help="seed; scene i uses simulator seed 1000*seed+i")
    p.add_argument("--quick", action="store_true", help="a small fast run (2 scenes, 2 persons, 3+2 sweep points)")
    p.add_argument("--perception", action="store_true",
                   help="time the learned front-ends instead (ViTPose-B/L, CLIFF-HR48/Res50, random weights, per person)")
    p.add_argument("--density", type=_float_list, default=None,
                   help="comma-separated fractions of each person's points to keep (default 1,0.5,0.25,0.1,0.05)")
    p.add_argument("--noise-cm", type=_float_list, default=None,
                   help="comma-separated added noise sigmas, cm (default 0,1,2,5,10)")
    p.add_argument("--noise-mode", default="ray", choices=("ray", "iso"), help="noise along the LiDAR ray or isotropic")
    p.add_argument("--speed-persons", type=int, default=None,
                   help="persons in the timed speed frame (default 8; 2 with --quick; 0 skips the speed part)")
    p.add_argument("--speed-repeats", type=int, default=None, help="timed runs of the speed frame (default 3; 1 with --quick)")
    # the same dest as the top-level ``smplify3d --threads`` (SUPPRESS: do not overwrite its value)
    p.add_argument("--threads", type=int, default=argparse.SUPPRESS,
                   help="torch CPU threads (same as smplify3d --threads; default: $OMP_NUM_THREADS, else 1)")
    p.add_argument("--smpl", default=None, help="SMPL model file or folder (default: the synthetic model)")
    p.add_argument("--gender", default="neutral", choices=("neutral", "male", "female"))
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--strict", action="store_true", help="exit 1 when an acceptance target is not met")
    p.set_defaults(func=_cmd_bench)
    return p
