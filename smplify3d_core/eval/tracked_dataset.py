"""Dataset evaluation through the tracked frame path: each sequence as the node would see it.

``smplify3d eval --dataset humanm3|sloper4d|demo --tracked`` feeds the frames of every sequence in
order to one :class:`~smplify3d_core.pipeline.FrameProcessor` (fresh tracks per sequence): tracked
persons are fitted warm from their track's prediction, new ones cold, exactly as in the live node.
A frame's stamp is its index in the sequence over the reader's ``frame_rate_hz``; tracking runs in
the dataset's world frame where the reader knows it (``FrameObservation.T_world_cam``: HumanM3's
fixed world, SLOPER4D's world through the LiDAR trajectory), else in the camera frame.

Besides the per-person errors of :func:`~smplify3d_core.eval.evaluate.evaluate_dataset` (the same
metrics, ``init`` only for persons that had an image-only estimate) it reports per sequence the
acceleration error (mm/frame², on the truth's joints in the world frame: the 15 HumanM3 joints
regressed from the mesh, or the 24 SMPL joints), the root error (mm: distance of the fitted pelvis,
the first joint of both layouts, from the true one, not aligned), identity switches, seconds per
frame and the fraction of warm-started fits. Frames are scored as published, after the fixed-lag
output (:mod:`smplify3d_core.fixed_lag`). The tracker's state runs through a sequence, so a tracked run is
not resumed from cached frames: it always starts at a sequence's first frame.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional

import numpy as np
from tqdm import tqdm

from smplify3d_core.body.tables import body_tables
from smplify3d_core.eval.datasets import DatasetReader, FrameRef
from smplify3d_core.eval.evaluate import (
    EvalReport, person_metrics, plot_per_frame, reported_metrics, smpl_meshes, start_evaluation, summarize_rows,
)
from smplify3d_core.eval.io import DatasetError, write_json_atomic
from smplify3d_core.eval.motion import acceleration_error, identity_switches, root_error
from smplify3d_core.geometry.transforms import transform_points
from smplify3d_core.models import FrontEnds
from smplify3d_core.observe import complete_persons
from smplify3d_core.outputs import smpl_result_json
from smplify3d_core.pipeline import FrameProcessor
from smplify3d_core.pipeline_config import PipelineConfig


def _sequences(refs: List[FrameRef]) -> Dict[str, List[FrameRef]]:
    """The frames grouped by sequence (first-seen order), each in index order."""
    grouped: Dict[str, List[FrameRef]] = {}
    for ref in refs:
        grouped.setdefault(ref.sequence, []).append(ref)
    return {name: sorted(frames, key=lambda ref: ref.index) for name, frames in grouped.items()}


def _truth_joints(frame, tracking_id: str, vertices: np.ndarray, joints: np.ndarray, regressor: np.ndarray):
    """(predicted, true) joints (J, 3) of one person in the camera frame, metres, on the joints its
    truth has (24 SMPL joints, or the 15 HumanM3 joints regressed from the mesh); None without truth."""
    truth = (frame.truth or {}).get(tracking_id)
    if truth is not None and truth.joints is not None:
        return joints, np.asarray(truth.joints, dtype=np.float64)
    person = next((p for p in frame.persons if p.tracking_id == tracking_id), None)
    if person is not None and person.pose3d is not None:
        return regressor @ vertices, np.asarray(person.pose3d, dtype=np.float64)
    return None


class _SequenceMotion:
    """What one sequence's motion metrics need: joints per person and frame (world frame, mm), the
    track each true person was given per frame, seconds and warm starts."""

    def __init__(self) -> None:
        self.predicted: Dict[str, Dict[int, np.ndarray]] = {}
        self.truth: Dict[str, Dict[int, np.ndarray]] = {}
        self.assignments: List[Dict[str, int]] = []
        self.seconds: List[float] = []
        self.fits = 0
        self.warm = 0

    def summary(self) -> dict:
        return {"accel_error_mm": acceleration_error(self.predicted, self.truth),
                "root_error_mm": root_error(self.predicted, self.truth),
                "id_switches": identity_switches(self.assignments),
                "seconds_per_frame": float(np.mean(self.seconds)) if self.seconds else float("nan"),
                "fits": self.fits, "warm_started_fraction": self.warm / self.fits if self.fits else 0.0}


def evaluate_dataset_tracked(reader: DatasetReader, fitter, out_dir, with_pck: bool = False,
                             front_ends: Optional[FrontEnds] = None, config: Optional[PipelineConfig] = None,
                             progress: bool = True, log: Callable[[str], None] = print,
                             max_frames: Optional[int] = None) -> EvalReport:
    """Evaluate every sequence of ``reader`` through the tracked frame path (module docstring) and write
    ``smpl_<frame>.json`` per frame, ``metrics.json`` (with ``"mode": "tracked"`` and per-sequence
    ``motion``) and ``per_frame_metrics.png``."""
    front_ends = front_ends or FrontEnds()
    config = config or PipelineConfig()
    out, refs, issues = start_evaluation(reader, out_dir, max_frames, log)
    need_image = front_ends.keypoints is not None or front_ends.initial_smpl is not None
    regressor = body_tables(fitter.body.data).humanm3_regressor
    rows: List[dict] = []
    motion: Dict[str, dict] = {}
    evaluated = 0
    start = time.perf_counter()

    def record(outcome, ref: FrameRef, frame, seen: _SequenceMotion) -> None:  # a frame as published
        if outcome.fit is None:
            seen.assignments.append({})
            return
        inits = {p.tracking_id: p.init for p in frame.persons}  # the image-only estimates, not the predictions
        rows.extend(_score_frame(ref, outcome, inits, fitter.body, regressor, seen, with_pck))
        folder = out / ref.sequence
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / f"smpl_{ref.frame_id}.json", smpl_result_json(outcome.fit))

    for sequence, frames in _sequences(refs).items():
        processor = FrameProcessor(config, fitter, front_ends)  # fresh tracks for every sequence
        seen = _SequenceMotion()
        for ref in tqdm(frames, desc=f"eval {reader.name} {sequence} (tracked)", unit="frame", disable=not progress):
            try:
                frame, notes = reader.load_frame(ref, load_image=need_image,
                                                 require_keypoints=front_ends.keypoints is None)
                # keypoints now; the tracked fit runs CLIFF only for the persons it fits cold
                frame.persons, dropped = complete_persons(frame.persons, frame.image, frame.camera, config, front_ends,
                                                          estimate_inits=False)
                clock = time.perf_counter()
                outcome = processor.process_observed(frame, ref.index / reader.frame_rate_hz, frame.T_world_cam)
                released = processor.output.push(outcome, (ref, frame))
                seen.seconds.append(time.perf_counter() - clock)
            except (DatasetError, ValueError, FileNotFoundError) as error:
                issues.append(str(error))
                log(f"warning: {error}")
                continue
            dropped += outcome.dropped  # completion's and the tracked fit's
            for note in notes + [f"frame {ref.key}: person {who!r}: {why}; skipped" for who, why in dropped]:
                if note not in issues:
                    issues.append(note)
                    log(f"warning: {note}")
            evaluated += 1
            for done, (done_ref, done_frame) in released:  # as published: after the fixed-lag output
                record(done, done_ref, done_frame, seen)
        for done, (done_ref, done_frame) in processor.output.flush():
            record(done, done_ref, done_frame, seen)
        motion[sequence] = seen.summary()
    sequences = {seq: {**summarize_rows([r for r in rows if r["sequence"] == seq]), "motion": motion.get(seq, {})}
                 for seq in sorted({r["sequence"] for r in rows})}
    summary = {
        "dataset": reader.name, "data": str(reader.root), "mode": "tracked", "frames_listed": len(refs),
        "frames_evaluated": evaluated, "frames_fitted_now": evaluated, "frames_from_cache": 0,
        "truth": sorted({r["fit"].get("truth") for r in rows}),
        "sequences": sequences,
        "combined": summarize_rows(rows) if rows else {"persons": 0, "frames": 0, "init": {}, "fit": {}},
        "motion": motion, "issues": issues, "seconds": time.perf_counter() - start,
    }
    write_json_atomic(out / "metrics.json", summary)
    if rows:
        plot_per_frame(rows, out / "per_frame_metrics.png")
    return EvalReport(summary, issues, evaluated, 0, out)


def _score_frame(ref: FrameRef, outcome, inits: dict, body, regressor: np.ndarray, seen: _SequenceMotion,
                 with_pck: bool) -> List[dict]:
    """Per-person rows of one fitted frame (``inits``: tracking id -> the person's image-only estimate or
    None; a warm-started person was fitted from its track's prediction instead); adds its joints,
    track ids and warm starts to ``seen``."""
    frame, result = outcome.fit.frame, outcome.fit.result
    tids = [p.tracking_id for p in frame.persons]
    vertices = result.vertices.double().numpy()
    joints = result.joints.double().numpy()
    fit_rows = person_metrics(vertices, joints, frame, tids, body)
    with_init = [b for b, tid in enumerate(tids) if inits.get(tid) is not None]
    init_rows: Dict[int, Optional[dict]] = {}
    if with_init:
        init_v, init_j = smpl_meshes(body, [inits[tids[b]] for b in with_init])
        scored = person_metrics(init_v, init_j, frame, [tids[b] for b in with_init], body)
        init_rows = dict(zip(with_init, scored))
    T_world_cam = frame.T_world_cam if frame.T_world_cam is not None else np.eye(4)

    rows, assigned = [], {}
    for b, tid in enumerate(tids):
        if not bool(result.fitted[b]) or fit_rows[b] is None:
            continue
        track = outcome.tracks[b]
        assigned[tid] = track.track_id
        seen.fits += 1
        seen.warm += int(track.warm_started)
        pair = _truth_joints(frame, tid, vertices[b], joints[b], regressor)
        if pair is not None:
            seen.predicted.setdefault(tid, {})[ref.index] = transform_points(T_world_cam, pair[0]) * 1000.0
            seen.truth.setdefault(tid, {})[ref.index] = transform_points(T_world_cam, pair[1]) * 1000.0
        rows.append({"sequence": ref.sequence, "frame": ref.frame_id, "index": ref.index, "tracking_id": tid,
                     "track_id": track.track_id, "warm_started": bool(track.warm_started),
                     "valid": bool(result.valid[b]), "init": reported_metrics(init_rows.get(b), with_pck),
                     "fit": reported_metrics(fit_rows[b], with_pck)})
    seen.assignments.append(assigned)
    return rows
