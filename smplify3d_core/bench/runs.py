"""The runs of ``smplify3d bench`` and the report dict they produce.

Parts (all on the same simulated scenes, deterministic for a seed except wall times):

1. accuracy and speed of the full method: mean PVE / MPJPE / PA-MPJPE (mm; PVE and MPJPE after
   aligning the pelvises, PA-MPJPE after a per-person similarity Procrustes alignment) of the
   image-only initial estimate and of the fit, the ratio PVE_fit / PVE_init, per-stage mean
   times, frames/s and persons/s. Every fitted body is scored; ``persons_valid`` counts those the
   verdict (default thresholds) passed as valid;
2. ablations: the full method; no visibility filter; no ICP; no 3D term (plain image SMPLify);
3. sweeps of the LiDAR's effect: density and range noise (:mod:`smplify3d_core.bench.perturb`);
4. speed: one frame of ``speed_persons`` persons timed after a warm-up run, with the per-stage split,
   and in the same process one forward + backward pass of the whole SMPL body for the same number
   of persons: the frame's cost in body passes (``body_passes``) travels between machines, seconds
   do not.

:func:`run_benchmark` returns the report (a JSON-ready dict once passed through
:func:`smplify3d_core.bench.report.clean_json`); :mod:`smplify3d_core.bench.report` prints and plots it.
"""
from __future__ import annotations

import dataclasses
import math
import os
import platform
import sys
import time
from typing import Dict, List, Sequence

import numpy as np
import torch
from tqdm import tqdm

from smplify3d_core.bench.perturb import add_point_noise, subsample_points
from smplify3d_core.outputs import frame_metrics
from smplify3d_core.models import build_fitter
from smplify3d_core.pipeline import fit_frame
from smplify3d_core.sim.presets import get_preset
from smplify3d_core.sim.scene import simulate_scene

DENSITY_FRACTIONS = (1.0, 0.5, 0.25, 0.1, 0.05)
NOISE_SIGMAS_CM = (0.0, 1.0, 2.0, 5.0, 10.0)
VARIANT_LABELS = {
    "full": "full method",
    "no_visibility_filter": "no visibility filter",
    "no_icp": "no ICP",
    "no_3d_term": "no 3D term (image SMPLify)",
}
VARIANTS = tuple(VARIANT_LABELS)
STAGES = ("visibility", "icp", "stage1", "stage2", "stage3")
METRIC_KEYS = ("pve", "mpjpe", "pa_mpjpe")
TARGET_PVE_RATIO = 0.55
TARGET_BODY_PASSES = 60.0
BODY_PASS_REPEATS = 25


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


# ---------------------------------------------------------------------------- small helpers
def _mean(values) -> float:
    """Mean of an iterable of numbers; NaN when it is empty."""
    values = [float(v) for v in values]
    return float(np.mean(values)) if values else float("nan")


def _summarize_rows(rows: List[dict]) -> dict:
    """Mean init/fit metrics over per-person rows (every fitted body, valid or not), and how many
    of them the verdict (:mod:`smplify3d_core.fit.verdict`) passed as valid."""
    out = {"persons": len(rows), "persons_valid": int(sum(bool(r["valid"]) for r in rows))}
    for key in METRIC_KEYS:
        out[f"{key}_init_mm"] = _mean(r[f"{key}_init_mm"] for r in rows)
        out[f"{key}_fit_mm"] = _mean(r[f"{key}_fit_mm"] for r in rows)
    out["pve_ratio"] = out["pve_fit_mm"] / out["pve_init_mm"] if rows and out["pve_init_mm"] > 0 else float("nan")
    return out


def _progress(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not enabled, leave=False, dynamic_ncols=True)


# ---------------------------------------------------------------------------- one fit, measured
def _fit_and_measure(frame, fitter, scene_id: str) -> dict:
    """Fit ``frame``; per-person metric rows (mm) with diagnostics, the wall time and stage times."""
    start = time.perf_counter()
    fit = fit_frame(frame, fitter)
    wall = time.perf_counter() - start
    metrics = frame_metrics(fit, fitter.body) or {"persons": []}
    persons = {p.tracking_id: p for p in frame.persons}
    rows = []
    for row in metrics["persons"]:
        person = persons[row["tracking_id"]]
        conf = person.keypoints[:, 2]
        rows.append({
            "scene": scene_id,
            "tracking_id": row["tracking_id"],
            "lidar_points": row["lidar_points"],
            "depth_m": row["depth_m"],
            "confident_keypoints": int((conf >= 0.6).sum()),
            "occluded_keypoints": int(((conf > 0) & (conf < 0.3)).sum()),
            "lidar_visible_keypoints": int((person.lidar_visibility >= 0.5).sum()),
            "pelvis_error_init_mm": row["pelvis_error_init_mm"],
            "pelvis_error_fit_mm": row["pelvis_error_fit_mm"],
            **{f"{k}_{s}_mm": row[f"{k}_{s}_mm"] for k in METRIC_KEYS for s in ("init", "fit")},
            "valid": bool(row["valid"]),
            "flags": list(row["flags"]),
        })
    return {"rows": rows, "wall_s": wall, "stages": dict(fit.result.stage_seconds), "persons": len(frame.persons)}


# ---------------------------------------------------------------------------- parts
def body_pass_seconds(body, persons: int, device, repeats: int = BODY_PASS_REPEATS, seed: int = 0) -> List[float]:
    """Seconds of ``repeats`` forward + backward passes of the whole SMPL body (all 6890 vertices and the 24
    joints) for ``persons`` bodies in random poses, gradients to all parameters, after two untimed ones:
    the unit in which :func:`run_speed` counts a frame's cost."""
    generator = torch.Generator().manual_seed(seed)
    model = body.to(device)
    dtype = model.v_template.dtype

    def random(width, scale):
        return (scale * torch.randn(persons, width, generator=generator, dtype=dtype)).to(device).requires_grad_(True)

    params = (random(3, 0.3), random(69, 0.2), random(model.num_betas, 1.0), random(3, 1.0))
    times = []
    for run in range(repeats + 2):
        start = time.perf_counter()
        out = model(*params)
        (out.vertices.square().sum() + out.joints.square().sum()).backward()
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        if run >= 2:
            times.append(time.perf_counter() - start)
        for param in params:
            param.grad = None
    return times


def run_speed(body, config, preset: str, persons: int, repeats: int, device, seed: int) -> dict:
    """Time fitting one frame of ``persons`` persons (after one warm-up fit); per-stage split; the frame's
    cost in whole-body forward + backward passes of the same batch (``body_passes``). The body passes
    are timed between the fits (before, between and after them), so that a machine whose speed drifts
    (a shared CPU) slows both alike; ``body_pass_s`` is their median."""
    scene = simulate_scene(body, persons=persons, preset=preset, seed=scene_seed(seed, 999))
    fitter = build_fitter(body, config, device=device, seed=seed)
    warm = _fit_and_measure(scene.frame, fitter, "speed")
    repeats = max(1, repeats)
    per_gap = max(5, -(-BODY_PASS_REPEATS // (repeats + 1)))
    pass_times = body_pass_seconds(fitter.body, persons, fitter.device, per_gap, seed)
    runs = []
    for _ in range(repeats):
        runs.append(_fit_and_measure(scene.frame, fitter, "speed"))
        pass_times += body_pass_seconds(fitter.body, persons, fitter.device, per_gap, seed)
    order = np.argsort([r["wall_s"] for r in runs])
    median = runs[int(order[len(order) // 2])]
    stages = {k: float(median["stages"].get(k, 0.0)) for k in STAGES}
    stages["inputs_and_other"] = max(0.0, median["wall_s"] - sum(stages.values()))
    pass_s = float(np.median(pass_times))
    body_passes = median["wall_s"] / pass_s
    return {
        "persons": persons,
        "lidar_points": [int(len(p.points)) for p in scene.frame.persons],
        "warmup_wall_s": warm["wall_s"],
        "warm_up_s": float(warm["stages"].get("warm_up", 0.0)),
        "wall_s_runs": [r["wall_s"] for r in runs],
        "wall_s_median": median["wall_s"],
        "wall_s_min": min(r["wall_s"] for r in runs),
        "stage_seconds_median_run": stages,
        "body_pass_s": pass_s,
        "body_pass_count": len(pass_times),
        "body_passes": body_passes,
        "stage_body_passes": {k: v / pass_s for k, v in stages.items()},
        "target_body_passes": TARGET_BODY_PASSES,
        "target_met": bool(body_passes <= TARGET_BODY_PASSES),
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
    """All parts of the benchmark; returns the report dict (see the module docstring).

    density: fractions in (0, 1] of each person's points kept; noise_cm: added noise sigmas, cm;
    noise_mode: "ray" (along the LiDAR ray) or "iso"; speed_persons: persons in the timed frame (0 skips it).
    """
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
        targets["body_passes"] = speed["body_passes"]
        targets["body_passes_target"] = TARGET_BODY_PASSES
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
        "diagnosis": diagnose(full_rows),
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


def diagnose(rows: List[dict]) -> dict:
    """Where the full method helps least: bins by LiDAR points, depth and confident keypoints,
    and the persons whose PVE improved least."""
    ranked = sorted(rows, key=lambda r: r["pve_fit_mm"] / max(r["pve_init_mm"], 1e-9), reverse=True)
    worst = [{k: r[k] for k in ("scene", "tracking_id", "lidar_points", "depth_m", "confident_keypoints",
                                 "occluded_keypoints", "lidar_visible_keypoints", "pve_init_mm", "pve_fit_mm",
                                 "pelvis_error_init_mm", "pelvis_error_fit_mm", "flags")} for r in ranked[:8]]
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
