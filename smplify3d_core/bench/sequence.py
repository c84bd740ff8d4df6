"""``smplify3d bench --sequence``: one simulated sequence fitted cold and tracked, with motion metrics.

The same frames (people walking, turning, stopping, waving, crouching, crossing in front of each
other, entering and leaving the view; optionally the robot driving) go through the one frame path
(:meth:`~smplify3d_core.pipeline.FrameProcessor.process_observed`) twice:

* ``cold`` — ``tracker.warm_start`` and ``tracker.smooth_output`` off: every person of every frame
  starts from its image-only estimate and runs the full schedule, and the raw fit is scored (the
  per-frame method); track ids still come from the tracker;
* ``tracked`` — tracked persons start from their tracks' predictions with the preset's reduced
  ``tracking`` schedule and temporal terms, and are published smoothed (and, with the default
  ``tracker.output_lag_frames`` 1, one frame late, averaged with their neighbours:
  :mod:`smplify3d_core.fixed_lag`).

Tracking runs in the sequence's ``odom`` frame (``T_odom_cam`` per frame). Per mode: seconds per
frame (mean wall time of the frame path after one warm-up frame outside the timing), PVE / MPJPE /
PA-MPJPE (mm; every fitted body; PVE and MPJPE after aligning the pelvises), root error (mm, the
pelvis's distance from the true one, not aligned), acceleration error
(mm/frame², 24 SMPL joints in ``odom``, :mod:`smplify3d_core.eval.motion`), identity switches, and
the number of true persons seen; and, per true person, the height error of its track's fused
shape (mm, rest-pose height of the fused betas minus the true betas'; in cold mode the track
averages the cold fits' betas the same way). ``settled_frames`` compares the two modes' seconds
over the frames in which every tracked person held its track's settled shape: the cost of live mode
once the shapes are fused (the first ``tracker.shape_frames`` fits of a track also fit its betas).
"""
from __future__ import annotations

import copy
import sys
import time

import numpy as np

from smplify3d_core.eval.stream import StreamFrame, evaluate_stream
from smplify3d_core.models import build_fitter
from smplify3d_core.pipeline import FrameProcessor
from smplify3d_core.pipeline_config import PipelineConfig

MODES = ("cold", "tracked")
TARGETS = {"speed_ratio": 0.3, "accel_ratio": 0.5}


def run_mode(body, fit_config, frames, warm_start: bool, device, seed: int, progress: bool = False,
             pipeline_config: PipelineConfig = None) -> dict:
    """Fit ``frames`` (a list of :class:`~smplify3d_core.sim.sequence.SequenceFrame`) in order with one
    frame processor (after one warm-up frame outside the timing); the mode's metrics
    (:func:`smplify3d_core.eval.stream.evaluate_stream`), and the mode's ``output_lag_frames``.
    ``pipeline_config`` is copied, not changed."""
    config = PipelineConfig() if pipeline_config is None else copy.deepcopy(pipeline_config)
    config.tracker.warm_start = bool(warm_start)
    config.tracker.smooth_output = bool(warm_start)  # cold is the per-frame method: raw fits
    if not warm_start:
        config.tracker.output_lag_frames = 0
    fitter = build_fitter(body, fit_config, device=device, seed=seed)
    FrameProcessor(config, fitter).process_observed(frames[0].scene.frame, frames[0].stamp, frames[0].T_odom_cam)
    processor = FrameProcessor(config, fitter)  # the warm-up's tracks are thrown away with its processor
    stream = (StreamFrame(f.index, f.stamp, f.T_odom_cam, f.scene.frame) for f in frames)
    metrics = evaluate_stream(processor, stream, body, progress=progress, desc="tracked" if warm_start else "cold",
                              total=len(frames))
    return {**metrics, "output_lag_frames": config.tracker.output_lag_frames}


def settled_frame_speed(cold: dict, tracked: dict) -> dict:
    """Seconds per frame of both modes over the frames in which every person the tracked mode fitted
    started warm and held its track's settled shape (the live mode's steady state, once the tracks'
    shapes are fused): {"frames", "cold_seconds_per_frame", "tracked_seconds_per_frame", "speed_ratio"}
    (NaN seconds and ratio when there is no such frame)."""
    cold_seconds = {r["index"]: r["seconds"] for r in cold["frames"]}
    settled = [r for r in tracked["frames"]
               if r["tracks"] and r["shape_held"] == len(r["tracks"]) and r["index"] in cold_seconds]
    tracked_s = float(np.mean([r["seconds"] for r in settled])) if settled else float("nan")
    cold_s = float(np.mean([cold_seconds[r["index"]] for r in settled])) if settled else float("nan")
    return {"frames": len(settled), "cold_seconds_per_frame": cold_s, "tracked_seconds_per_frame": tracked_s,
            "speed_ratio": tracked_s / cold_s if settled else float("nan")}


def run_sequence_bench(body, fit_config, settings, device="cpu", seed: int = 0, progress: bool = True,
                       frames=None) -> dict:
    """Simulate the sequence of ``settings`` (:class:`~smplify3d_core.sim.sequence.SequenceSettings`),
    fit it cold and tracked, and return {"settings", "cold", "tracked", "settled_frames", "targets"}.

    frames: the sequence's frames when they were simulated (or loaded) already, e.g. on a machine
    without the simulator's ray caster; then ``settings`` only describes them."""
    start = time.perf_counter()
    if frames is None:
        from smplify3d_core.sim.sequence import simulate_sequence

        frames = simulate_sequence(body, settings, progress=progress)
    simulated = time.perf_counter() - start
    report = {"settings": {"persons": settings.persons, "frames": settings.frames, "fps": settings.fps,
                           "preset": str(getattr(settings.preset, "name", settings.preset)), "seed": settings.seed,
                           "moving_robot": settings.moving_robot, "crossings": settings.crossings,
                           "simulation_s": simulated}}
    for mode in MODES:
        report[mode] = run_mode(body, fit_config, frames, mode == "tracked", device, seed, progress)
    report["settings"]["output_lag_frames"] = report["tracked"]["output_lag_frames"]
    cold, tracked = report["cold"], report["tracked"]
    report["settled_frames"] = settled_frame_speed(cold, tracked)
    report["targets"] = {
        "speed_ratio": tracked["seconds_per_frame"] / cold["seconds_per_frame"],
        "speed_met": tracked["seconds_per_frame"] <= TARGETS["speed_ratio"] * cold["seconds_per_frame"],
        "pve_met": tracked["pve_mm"] <= cold["pve_mm"],
        "accel_ratio": tracked["accel_error_mm"] / cold["accel_error_mm"],
        "accel_met": tracked["accel_error_mm"] <= TARGETS["accel_ratio"] * cold["accel_error_mm"],
        "id_switches_met": tracked["id_switches"] == 0,
    }
    return report


def print_sequence_report(report: dict, out=None) -> None:
    """The cold / tracked table and the targets."""
    out = sys.stdout if out is None else out  # looked up per call: sys.stdout may be replaced after import
    s = report["settings"]
    fit = s.get("config_name", s["preset"])
    print(f"sequence: {s['persons']} persons, {s['frames']} frames at {s['fps']:g} Hz, {s['preset']} sensor, fit preset {fit}, "
          f"{'moving' if s['moving_robot'] else 'static'} robot, seed {s['seed']}, tracked output lag "
          f"{s.get('output_lag_frames', 0)} frame(s)", file=out)
    keys = ("seconds_per_frame", "pve_mm", "mpjpe_mm", "pa_mpjpe_mm", "root_error_mm", "accel_error_mm", "id_switches",
            "persons")
    print(f"{'mode':8s} " + " ".join(f"{k:>17s}" for k in keys), file=out)
    for mode in MODES:
        row = report[mode]
        cells = [f"{row[k]:17.3f}" if k == "seconds_per_frame" else
                 (f"{row[k]:17d}" if isinstance(row[k], int) else f"{row[k]:17.1f}") for k in keys]
        print(f"{mode:8s} " + " ".join(cells), file=out)
    for mode in MODES:
        errors = report[mode]["shape_height_error_mm"]
        if errors:
            print(f"{mode}: track shape height error, mm: " + ", ".join(f"{p} {e:+.0f}" for p, e in errors.items())
                  + f" (mean |error| {np.mean(np.abs(list(errors.values()))):.0f})", file=out)
    steady = report.get("settled_frames")
    if steady and steady["frames"]:
        print(f"frames in which every track's shape had settled ({steady['frames']} of {s['frames']}): tracked "
              f"{steady['tracked_seconds_per_frame']:.3f} s/frame, cold {steady['cold_seconds_per_frame']:.3f} on the "
              f"same frames ({steady['speed_ratio']:.2f}x)", file=out)
    t = report["targets"]
    print(f"targets: tracked time {t['speed_ratio']:.2f}x cold (<= {TARGETS['speed_ratio']}: "
          f"{'met' if t['speed_met'] else 'NOT met'}); tracked PVE <= cold: {'met' if t['pve_met'] else 'NOT met'}; "
          f"tracked accel {t['accel_ratio']:.2f}x cold (<= {TARGETS['accel_ratio']}: "
          f"{'met' if t['accel_met'] else 'NOT met'}); id switches 0: {'met' if t['id_switches_met'] else 'NOT met'}",
          file=out)
