"""Output of ``smplify3d bench``: the printed tables, the sweep figure and the JSON cleaning.

Everything here reads the report dict of :func:`smplify3d_core.bench.runs.run_benchmark`
(errors in mm, times in seconds).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np


def _finite_or_none(value):
    """``value``, or None when it is a non-finite float."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def clean_json(obj):
    """JSON-safe copy of ``obj`` (nested dicts, lists, tuples, numpy arrays and scalars): numpy
    scalars to Python numbers, arrays to lists, dict keys to str, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean_json(obj.tolist())
    if isinstance(obj, (np.floating,)):
        return _finite_or_none(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, float):
        return _finite_or_none(obj)
    return obj


def write_json_report(path, payload: dict) -> Path:
    """Write ``payload`` (cleaned with :func:`clean_json`) as indented JSON to ``path`` (folders made); say so."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean_json(payload), indent=1, allow_nan=False))
    print(f"wrote {path}")
    return path


def _mean_pelvis_init(report: dict) -> float:
    """Mean absolute pelvis error (mm) of the initial estimates over the report's persons; NaN without persons."""
    errors = [row["pelvis_error_init_mm"] for row in report["persons"]]
    return float(np.mean(errors)) if errors else math.nan


def print_report(report: dict, out=None) -> None:
    """Print ``report`` (from :func:`~smplify3d_core.bench.runs.run_benchmark`) as tables to ``out``."""
    out = sys.stdout if out is None else out  # looked up per call: sys.stdout may be replaced after import

    def p(line=""):
        print(line, file=out)

    s = report["settings"]
    fit = s.get("config_name", s["preset"])
    p(f"smplify3d bench: {s['scenes']} scenes x {s['persons']} persons, {s['preset']} sensor, fit preset {fit}, "
      f"seed {s['seed']}, "
      f"device {report['device']}, torch threads {report['torch_threads']} (OMP_NUM_THREADS={report['omp_num_threads_env']}), "
      f"{report['cpu_count']} CPUs")
    sm, t = report["summary"], report["timings"]
    p()
    p(f"1. Accuracy of the full method over {sm['persons']} persons (mm; MPJPE/PVE root-aligned; "
      f"{sm['persons_valid']} of them valid by the verdict)")
    p(f"   {'':10} {'PVE':>8} {'MPJPE':>8} {'PA-MPJPE':>9}")
    p(f"   {'init':10} {sm['pve_init_mm']:8.1f} {sm['mpjpe_init_mm']:8.1f} {sm['pa_mpjpe_init_mm']:9.1f}")
    p(f"   {'fit':10} {sm['pve_fit_mm']:8.1f} {sm['mpjpe_fit_mm']:8.1f} {sm['pa_mpjpe_fit_mm']:9.1f}")
    tg = report["targets"]
    met = "met" if tg["pve_ratio_met"] else "NOT met"
    p(f"   PVE fit/init = {sm['pve_ratio']:.3f} (target <= {tg['pve_ratio_target']}: {met})")
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
      f"{1.0:8.3f} {_mean_pelvis_init(report):7.1f}")
    p("   full method beats: " + ", ".join(f"{report['variants'][k]['label']} {'yes' if v else 'NO'}"
                                       for k, v in tg["full_beats_ablation"].items()))
    p("   (pelvis = absolute pelvis position error, mm: the depth error the LiDAR corrects)")
    p()
    p("3. Sweeps (full method; " + s["sweep_method"] + ")")
    p("   LiDAR density (points randomly subsampled per person; 3D term skipped below "
      f"{s['fit_config']['min_lidar_points']} points)")
    p(f"   {'fraction':>8} {'points/person':>13} {'<min':>5} {'PVE':>7} {'MPJPE':>7} {'PA-MPJPE':>8} {'valid':>7}")
    for row in report["sweeps"]["density"]:
        p(f"   {row['fraction']:8.2f} {row['mean_points_per_person']:13.1f} {row['persons_below_min_points']:5d} "
          f"{row['pve_fit_mm']:7.1f} {row['mpjpe_fit_mm']:7.1f} {row['pa_mpjpe_fit_mm']:8.1f} "
          f"{row['persons_valid']:3d}/{row['persons']:<3d}")
    mode = "along the LiDAR ray" if s["noise_mode"] == "ray" else "isotropic"
    p(f"   range noise (extra Gaussian noise {mode}, on top of the simulator's {s['simulator_range_noise_cm']:.0f} cm)")
    p(f"   {'sigma cm':>8} {'PVE':>7} {'MPJPE':>7} {'PA-MPJPE':>8} {'valid':>7}")
    for row in report["sweeps"]["noise"]:
        p(f"   {row['sigma_cm']:8.1f} {row['pve_fit_mm']:7.1f} {row['mpjpe_fit_mm']:7.1f} {row['pa_mpjpe_fit_mm']:8.1f} "
          f"{row['persons_valid']:3d}/{row['persons']:<3d}")
    p(f"   init PVE for reference: {sm['pve_init_mm']:.1f} mm; "
      f"no 3D term: {report['variants']['no_3d_term']['pve_fit_mm']:.1f} mm")
    sp = report.get("speed")
    if sp:
        p()
        p(f"4. Speed: one frame of {sp['persons']} persons ({s['preset']}, {sum(sp['lidar_points'])} LiDAR points), "
          f"device {report['device']}, torch threads {report['torch_threads']}")
        p(f"   first fit {sp['warmup_wall_s']:.2f} s (of which one-off warm-up {sp['warm_up_s']:.2f} s); timed runs "
          + ", ".join(f"{w:.2f}" for w in sp["wall_s_runs"]) + f" s; median {sp['wall_s_median']:.2f} s")
        p(f"   one forward + backward of the whole body for {sp['persons']} persons: {1000 * sp['body_pass_s']:.1f} ms, "
          f"so the frame costs {sp['body_passes']:.1f} body passes "
          f"(target <= {sp['target_body_passes']:.0f}: {'met' if sp['target_met'] else 'NOT met'})")
        p("   per-stage split of the median run: " + ", ".join(
            f"{k} {v:.2f}s ({sp['stage_body_passes'][k]:.1f})" for k, v in sp["stage_seconds_median_run"].items())
          + "  (seconds, body passes)")
    d = report["diagnosis"]
    p()
    p("Diagnosis (full method, per person PVE fit/init)")
    q = d["person_pve_ratio_quantiles"]
    if q:
        p("   ratio quantiles: " + ", ".join(f"{int(k * 100)}% {v:.2f}" for k, v in q.items()) +
          f"; worse than init: {d['persons_worse_than_init']}, "
          f"above {tg['pve_ratio_target']}: {d['persons_above_target_ratio']} of {sm['persons']}")
    for title, key, unit in (("LiDAR points", "by_points", ""), ("depth", "by_depth_m", " m"),
                             ("confident keypoints (conf >= 0.6)", "by_confident_keypoints", ""),
                             ("keypoints occluded by others (conf < 0.3)", "by_occluded_keypoints", "")):
        p(f"   by {title}:")
        for b in d[key]:
            high = "inf" if b["range"][1] is None else f"{b['range'][1]:g}"
            p(f"     [{b['range'][0]:g}, {high}){unit}: n={b['persons']:3d}  "
              f"PVE {b['pve_init_mm']:6.1f} -> {b['pve_fit_mm']:6.1f} "
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
    fig.suptitle(f"smplify3d bench: {s['scenes']} scenes x {s['persons']} persons, {s['preset']} sensor, "
                 f"fit preset {s.get('config_name', s['preset'])}, seed {s['seed']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
