"""Evaluating a stream of frames with ground truth through the tracked frame path.

:func:`evaluate_stream` feeds frames in order to one
:class:`~smplify3d_core.pipeline.FrameProcessor` (its tracks carry over, as in the node) and scores
every fitted body against the frame's truth: PVE / MPJPE / PA-MPJPE (mm; PVE and MPJPE after
aligning the pelvises), root error (mm, distance between the fitted and the true pelvis, not
aligned: where the person is), acceleration error (mm/frame², the 24 SMPL joints in the stream's world
frame, :mod:`smplify3d_core.eval.motion`), identity switches, seconds per frame, and per true
person the height error of its track's fused shape. ``smplify3d bench --sequence`` and
``smplify3d eval --dataset sequence`` both use it.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

import numpy as np
import torch
from tqdm import tqdm

from smplify3d_core.eval.metrics import score_against_truth
from smplify3d_core.eval.motion import acceleration_error, identity_switches, root_error
from smplify3d_core.geometry.transforms import transform_points
from smplify3d_core.types import FrameObservation


@dataclass
class StreamFrame:
    """One frame of a stream: index (frame number), stamp (s), T_world_cam (4, 4) camera -> the world /
    tracking frame (odom), and the frame with its persons and ``truth``."""

    index: int
    stamp: float
    T_world_cam: np.ndarray
    frame: FrameObservation


def standing_height(body, betas: np.ndarray) -> float:
    """Height (m) of the shape ``betas`` (10,) standing in the rest pose: its vertical extent."""
    with torch.no_grad():
        rest = body(betas=torch.as_tensor(np.asarray(betas)[None], dtype=body.v_template.dtype,
                                          device=body.v_template.device)).vertices[0]
    return float(rest[:, 1].max() - rest[:, 1].min())


def _mean(values: List[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def evaluate_stream(processor, frames: Iterable[StreamFrame], body, progress: bool = False, desc: str = "frames",
                    total: Optional[int] = None) -> dict:
    """Process ``frames`` in order with ``processor`` (tracking in each frame's ``T_world_cam``) and score them.

    Each outcome goes through the processor's fixed-lag output (``tracker.output_lag_frames``) and is
    scored as published; seconds per frame include the averaging.

    Returns seconds_per_frame, pve_mm, mpjpe_mm, pa_mpjpe_mm, root_error_mm, accel_error_mm, id_switches, persons
    (true persons fitted at least once), person_frames, warm_started_fraction,
    shape_height_error_mm (true person -> mm) and frames (per frame: index, seconds, true person ->
    track id, warm-started count, count of warm fits that held their track's settled shape).
    """
    scores: Dict[str, List[float]] = {"pve_mm": [], "mpjpe_mm": [], "pa_mpjpe_mm": []}
    predicted: Dict[str, Dict[int, np.ndarray]] = {}
    truth: Dict[str, Dict[int, np.ndarray]] = {}
    assignments: List[Dict[str, int]] = []
    records = []
    shapes: Dict[str, np.ndarray] = {}  # true person -> its track's fused betas at its last frame
    true_betas: Dict[str, np.ndarray] = {}
    def score_published(outcome, item: StreamFrame) -> None:
        known = item.frame.truth or {}
        assigned: Dict[str, int] = {}
        warm = held = 0
        if outcome.fit is not None:
            result = outcome.fit.result
            for k, person in enumerate(outcome.fit.frame.persons):
                true = known.get(person.tracking_id)
                if true is None or not bool(result.fitted[k]):
                    continue
                assigned[person.tracking_id] = outcome.tracks[k].track_id
                warm += int(outcome.tracks[k].warm_started)
                held += int(outcome.tracks[k].shape_held)
                score = score_against_truth(result.vertices[k:k + 1].double().numpy(),
                                            result.joints[k:k + 1].double().numpy(), true.vertices[None],
                                            true.joints[None])
                for key in scores:
                    scores[key].append(float(score[key][0]))
                predicted.setdefault(person.tracking_id, {})[item.index] = \
                    transform_points(item.T_world_cam, result.joints[k].double().numpy()) * 1000.0
                truth.setdefault(person.tracking_id, {})[item.index] = transform_points(item.T_world_cam, true.joints) * 1000.0
        assignments.append(assigned)
        records.append({"index": item.index, "seconds": seconds_of[item.index], "tracks": assigned, "warm_started": warm,
                        "shape_held": held})

    seconds_of: Dict[int, float] = {}  # frame index -> wall time of its frame path
    for item in tqdm(frames, desc=desc, unit="frame", file=sys.stderr, disable=not progress, leave=False,
                     dynamic_ncols=True, total=total):
        start = time.perf_counter()
        outcome = processor.process_observed(item.frame, item.stamp, item.T_world_cam)
        released = processor.output.push(outcome, item)
        seconds_of[item.index] = time.perf_counter() - start
        known = item.frame.truth or {}
        for k, person in enumerate(outcome.fit.frame.persons if outcome.fit is not None else []):
            track = processor.tracker.tracks.get(outcome.tracks[k].track_id)
            if person.tracking_id in known and bool(outcome.fit.result.fitted[k]) and track is not None \
                    and track.shape is not None:
                shapes[person.tracking_id] = track.shape.copy()
                true_betas[person.tracking_id] = known[person.tracking_id].smpl.betas
        for done, done_item in released:
            score_published(done, done_item)
    for done, done_item in processor.output.flush():
        score_published(done, done_item)
    fitted = len(scores["pve_mm"])
    return {
        "seconds_per_frame": _mean(list(seconds_of.values())),
        "pve_mm": _mean(scores["pve_mm"]),
        "mpjpe_mm": _mean(scores["mpjpe_mm"]),
        "pa_mpjpe_mm": _mean(scores["pa_mpjpe_mm"]),
        "root_error_mm": root_error(predicted, truth),
        "accel_error_mm": acceleration_error(predicted, truth),
        "id_switches": identity_switches(assignments),
        "persons": len(truth),
        "person_frames": fitted,
        "warm_started_fraction": sum(r["warm_started"] for r in records) / fitted if fitted else 0.0,
        "shape_height_error_mm": {p: 1000.0 * (standing_height(body, betas) - standing_height(body, true_betas[p]))
                                  for p, betas in sorted(shapes.items())},
        "frames": records,
    }
