"""``smplify3d bench --sequence``: one simulated sequence fitted cold and tracked, with motion metrics.

The same frames (people walking, turning, stopping, waving, crouching, crossing in front of each
other, entering and leaving the view; optionally the robot driving) go through the one frame path
(:meth:`~smplify3d_core.pipeline.FrameProcessor.process_observed`) twice:

* ``cold`` — ``tracker.warm_start`` off: every person of every frame starts from its image-only
  estimate and runs the full schedule (the per-frame method); track ids still come from the tracker;
* ``tracked`` — tracked persons start from their tracks' predictions with the preset's reduced
  ``tracking`` schedule and temporal terms.

Tracking runs in the sequence's ``odom`` frame (``T_odom_cam`` per frame). Per mode: seconds per
frame (mean wall time of the frame path after one warm-up frame outside the timing), PVE / MPJPE /
PA-MPJPE (mm; every fitted body; PVE and MPJPE after aligning the pelvises), acceleration error
(mm/frame², 24 SMPL joints in ``odom``, :mod:`smplify3d_core.eval.motion`), identity switches, and
the number of true persons seen; and, per true person, the height error of its track's fused
shape (mm, rest-pose height of the fused betas minus the true betas'; in cold mode the track
averages the cold fits' betas the same way).
"""
from __future__ import annotations

import sys
import time
from typing import Dict, List

import numpy as np
import torch
from tqdm import tqdm

from smplify3d_core.eval.metrics import score_against_truth
from smplify3d_core.eval.motion import acceleration_error, identity_switches
from smplify3d_core.models import build_fitter
from smplify3d_core.pipeline import FrameProcessor
from smplify3d_core.pipeline_config import PipelineConfig

MODES = ("cold", "tracked")
TARGETS = {"speed_ratio": 0.3, "accel_ratio": 0.5}


def _transform(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ T[:3, :3].T + T[:3, 3]


def standing_height(body, betas: np.ndarray) -> float:
    """Height (m) of the shape ``betas`` (10,) standing in the rest pose: its vertical extent."""
    with torch.no_grad():
        rest = body(betas=torch.as_tensor(np.asarray(betas)[None], dtype=body.v_template.dtype,
                                          device=body.v_template.device)).vertices[0]
    return float(rest[:, 1].max() - rest[:, 1].min())


def run_mode(body, fit_config, frames, warm_start: bool, device, seed: int, progress: bool = False,
             pipeline_config: PipelineConfig = None) -> dict:
    """Fit ``frames`` (a list of :class:`~smplify3d_core.sim.sequence.SequenceFrame`) in order with one
    frame processor; returns the mode's metrics and its per-frame records."""
    config = PipelineConfig() if pipeline_config is None else pipeline_config
    config.tracker.warm_start = bool(warm_start)
    fitter = build_fitter(body, fit_config, device=device, seed=seed)
    FrameProcessor(config, fitter).process_observed(frames[0].scene.frame, frames[0].stamp, frames[0].T_odom_cam)
    processor = FrameProcessor(config, fitter)  # the warm-up's tracks are thrown away with its processor
    seconds: List[float] = []
    scores: Dict[str, List[float]] = {"pve_mm": [], "mpjpe_mm": [], "pa_mpjpe_mm": []}
    predicted: Dict[str, Dict[int, np.ndarray]] = {}
    truth: Dict[str, Dict[int, np.ndarray]] = {}
    assignments: List[Dict[str, int]] = []
    records = []
    shapes: Dict[str, tuple] = {}  # true person -> (its track's fused betas, fits fused) at its last frame
    true_betas: Dict[str, np.ndarray] = {}
    bar = tqdm(frames, desc="tracked" if warm_start else "cold", unit="frame", file=sys.stderr, disable=not progress,
               leave=False, dynamic_ncols=True)
    for frame in bar:
        start = time.perf_counter()
        outcome = processor.process_observed(frame.scene.frame, frame.stamp, frame.T_odom_cam)
        seconds.append(time.perf_counter() - start)
        assigned: Dict[str, int] = {}
        warm = 0
        if outcome.fit is not None:
            result = outcome.fit.result
            for k, person in enumerate(outcome.fit.frame.persons):
                true = frame.scene.frame.truth.get(person.tracking_id)
                if true is None or not bool(result.fitted[k]):
                    continue
                track = outcome.tracks[k]
                assigned[person.tracking_id] = track.track_id
                warm += int(track.warm_started)
                score = score_against_truth(result.vertices[k:k + 1].double().numpy(),
                                            result.joints[k:k + 1].double().numpy(), true.vertices[None],
                                            true.joints[None])
                for key in scores:
                    scores[key].append(float(score[key][0]))
                predicted.setdefault(person.tracking_id, {})[frame.index] = \
                    _transform(frame.T_odom_cam, result.joints[k].double().numpy()) * 1000.0
                truth.setdefault(person.tracking_id, {})[frame.index] = _transform(frame.T_odom_cam, true.joints) * 1000.0
        assignments.append(assigned)
        for person_id, track_id in assigned.items():
            track = processor.tracker.tracks.get(track_id)
            if track is not None and track.shape is not None:
                shapes[person_id] = (track.shape.copy(), track.good_frames)
                true_betas[person_id] = frame.scene.frame.truth[person_id].smpl.betas
        records.append({"index": frame.index, "seconds": seconds[-1], "tracks": assigned, "warm_started": warm})
    return {
        "seconds_per_frame": float(np.mean(seconds)),
        "pve_mm": float(np.mean(scores["pve_mm"])) if scores["pve_mm"] else float("nan"),
        "mpjpe_mm": float(np.mean(scores["mpjpe_mm"])) if scores["mpjpe_mm"] else float("nan"),
        "pa_mpjpe_mm": float(np.mean(scores["pa_mpjpe_mm"])) if scores["pa_mpjpe_mm"] else float("nan"),
        "accel_error_mm": acceleration_error(predicted, truth),
        "id_switches": identity_switches(assignments),
        "persons": len(truth),
        "person_frames": len(scores["pve_mm"]),
        "warm_started_fraction": (sum(r["warm_started"] for r in records) / len(scores["pve_mm"])
                                  if scores["pve_mm"] else 0.0),
        "shape_height_error_mm": {p: 1000.0 * (standing_height(body, betas) - standing_height(body, true_betas[p]))
                                  for p, (betas, _) in sorted(shapes.items())},
        "frames": records,
    }


def run_sequence_bench(body, fit_config, settings, device="cpu", seed: int = 0, progress: bool = True) -> dict:
    """Simulate the sequence of ``settings`` (:class:`~smplify3d_core.sim.sequence.SequenceSettings`),
    fit it cold and tracked, and return {"settings", "cold", "tracked", "targets"}."""
    from smplify3d_core.sim.sequence import simulate_sequence

    start = time.perf_counter()
    frames = simulate_sequence(body, settings, progress=progress)
    simulated = time.perf_counter() - start
    report = {"settings": {"persons": settings.persons, "frames": settings.frames, "fps": settings.fps,
                           "preset": str(getattr(settings.preset, "name", settings.preset)), "seed": settings.seed,
                           "moving_robot": settings.moving_robot, "crossings": settings.crossings,
                           "simulation_s": simulated}}
    for mode in MODES:
        report[mode] = run_mode(body, fit_config, frames, mode == "tracked", device, seed, progress)
    cold, tracked = report["cold"], report["tracked"]
    report["targets"] = {
        "speed_ratio": tracked["seconds_per_frame"] / cold["seconds_per_frame"],
        "speed_met": tracked["seconds_per_frame"] <= TARGETS["speed_ratio"] * cold["seconds_per_frame"],
        "pve_met": tracked["pve_mm"] <= cold["pve_mm"],
        "accel_ratio": tracked["accel_error_mm"] / cold["accel_error_mm"],
        "accel_met": tracked["accel_error_mm"] <= TARGETS["accel_ratio"] * cold["accel_error_mm"],
        "id_switches_met": tracked["id_switches"] == 0,
    }
    return report


def print_sequence_report(report: dict, out=sys.stdout) -> None:
    """The cold / tracked table and the targets."""
    s = report["settings"]
    print(f"sequence: {s['persons']} persons, {s['frames']} frames at {s['fps']:g} Hz, {s['preset']} sensor, "
          f"{'moving' if s['moving_robot'] else 'static'} robot, seed {s['seed']}", file=out)
    keys = ("seconds_per_frame", "pve_mm", "mpjpe_mm", "pa_mpjpe_mm", "accel_error_mm", "id_switches", "persons")
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
    t = report["targets"]
    print(f"targets: tracked time {t['speed_ratio']:.2f}x cold (<= {TARGETS['speed_ratio']}: "
          f"{'met' if t['speed_met'] else 'NOT met'}); tracked PVE <= cold: {'met' if t['pve_met'] else 'NOT met'}; "
          f"tracked accel {t['accel_ratio']:.2f}x cold (<= {TARGETS['accel_ratio']}: "
          f"{'met' if t['accel_met'] else 'NOT met'}); id switches 0: {'met' if t['id_switches_met'] else 'NOT met'}",
          file=out)
