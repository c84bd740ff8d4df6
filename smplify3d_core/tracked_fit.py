"""Fitting the persons of one frame with what the tracks know: warm starts, cold fits, restarts.

:func:`fit_tracked_frame` is the fit step of every entry point (the node, ``smplify3d-bag
process``, the sequence benchmark and evaluation), so a stream gives the same bodies wherever it
is processed:

1. each person becomes a :class:`~smplify3d_core.tracking.Detection` (median of its LiDAR points
   in the tracking frame, its box) and is associated with the tracks;
2. a person whose track has a recent valid fit starts from the track's prediction and runs the
   preset's reduced ``tracking`` schedule (*warm*); every other person — new tracks, tracks whose
   last valid fit is older than ``tracker.max_warm_gap``, or all persons when
   ``tracker.warm_start`` is off — starts from its image-only estimate (CLIFF runs only for
   these) and runs the full schedule (*cold*);
3. the verdict judges every body; a warm fit that fails it is fitted again cold in the same frame
   (``track_restarted``) and its track's pose and shape are forgotten;
4. the fitted bodies go back to the tracker (motion filter, pose filter, fused shape). A fit is fused
   into its track's shape only when the image shows the whole person (its box stays
   ``tracker.shape_border_px`` from the image border); each fused fit keeps its inputs and raw
   parameters (:class:`ShapeFrame`) until the track has ``tracker.shape_frames`` of them. Then one
   shape is fitted to all of them together (:meth:`SMPLify3D.fit_shared_shape`: the frames'
   keypoints, each frame's pose and depth held as its own fit left them, the shape prior counted
   once) and becomes the track's settled shape — the mean of per-frame fits would keep each frame's
   pull towards the mean body;
5. with ``tracker.smooth_output``, each person whose track had a valid fit before is published
   smoothed (:func:`publish_smoothed`): the pelvis from the motion filter, the body pose from the
   pose filter, the root orientation and shape of the fit. A smoothed body whose joints stray
   more than ``tracker.max_smoothing_offset`` from the fit's is replaced by the fit (and the pose
   filter reset to it), so smoothing never hides a fast change for long. The verdict is that of
   the fit.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from smplify3d_core.fit.batches import scatter_persons, select_persons, stack_inputs
from smplify3d_core.fit.inputs import FitInputs
from smplify3d_core.fit.optimizer import FitResult, SMPLify3D, WarmStart
from smplify3d_core.fit.verdict import VerdictConfig, apply_verdict
from smplify3d_core.geometry.transforms import transform_points
from smplify3d_core.tracking import Detection, FittedBody, PersonTracker, TrackPrediction
from smplify3d_core.types import FrameObservation, PersonObservation, PinholeCamera, SMPLParams

RESTART_FLAG = "track_restarted"


@dataclass
class PersonTrack:
    """The track behind one fitted person.

    track_id: stable over frames; age_s: seconds since the track was born (0 in its first frame);
    warm_started: the published fit started from the track's prediction; restarted: a warm fit
    failed the verdict and the person was fitted again cold; shape_held: the warm fit kept the
    track's settled shape (its betas were not fitted, the short ``settled_stage2_iterations`` schedule).
    """

    track_id: int
    age_s: float
    warm_started: bool
    restarted: bool = False
    shape_held: bool = False


@dataclass
class TrackedFit:
    """What :func:`fit_tracked_frame` returns: the fitted persons (``frame.persons`` in the result's
    order, with the initial values the fits started from), the batched inputs, the judged
    :class:`FitResult`, one :class:`PersonTrack` per person, and the persons that could not be
    fitted ((tracking id, reason))."""

    frame: FrameObservation
    inputs: Optional[FitInputs]
    result: Optional[FitResult]
    tracks: List[PersonTrack]
    dropped: List[Tuple[str, str]]


@dataclass
class ShapeFrame:
    """One fit fused into a track's shape, kept for the track's shape fit: the person's batched inputs
    (one person) and its raw fit (global_orient (1, 3), body_pose (1, 69) rad, betas (1, 10), transl
    (1, 3) m, camera frame)."""

    inputs: FitInputs
    global_orient: torch.Tensor
    body_pose: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor


def cut_off_by_image(bbox_xywh, camera: PinholeCamera, border_px: float) -> bool:
    """Whether the box (4,) x, y, width, height px comes within ``border_px`` of the image border: the
    image may cut the person off, so the fit does not show the whole body."""
    x, y, w, h = (float(v) for v in np.asarray(bbox_xywh, dtype=np.float64).reshape(4))
    return not (x > border_px and y > border_px and x + w < camera.width - border_px
                and y + h < camera.height - border_px)


def fit_settled_shapes(fitter: SMPLify3D, tracker: PersonTracker, should_stop=None) -> float:
    """Fit one shape to the kept frames of each track whose shape has just settled
    (:meth:`PersonTracker.shape_fits_due`; all such tracks in one batch) and settle the tracks to them.
    Frames that cannot go in one batch (different sensor origins) leave the mean of the fits. Returns
    the seconds it took."""
    due = tracker.shape_fits_due()
    if not due:
        return 0.0
    start = time.perf_counter()
    kept = [frame for frames in due.values() for frame in frames]
    groups = torch.cat([torch.full((len(frames),), g, dtype=torch.long) for g, frames in enumerate(due.values())])
    try:
        inputs = stack_inputs([frame.inputs for frame in kept])
    except ValueError:
        for track_id in due:
            tracker.set_shape(track_id, None)
        return time.perf_counter() - start
    betas = fitter.fit_shared_shape(inputs, *(torch.cat([getattr(frame, name) for frame in kept])
                                              for name in ("global_orient", "body_pose", "betas", "transl")),
                                    groups, should_stop=should_stop)
    first = 0  # each group's rows are consecutive; all of them hold the group's shape
    for track_id, frames in due.items():
        tracker.set_shape(track_id, betas[first].double().numpy())
        first += len(frames)
    return time.perf_counter() - start


def detection_of(person: PersonObservation, T_track_cam: np.ndarray, min_points: int) -> Detection:
    """The tracker's view of ``person``: the median of its LiDAR points in the tracking frame (None
    with fewer than ``min_points`` points) and its box."""
    points = np.asarray(person.points, dtype=np.float64).reshape(-1, 3)
    points = points[np.all(np.isfinite(points), axis=1)]
    position = transform_points(T_track_cam, np.median(points, axis=0))[0] if len(points) >= min_points else None
    return Detection(position, np.asarray(person.bbox_xywh, dtype=np.float64))


def warm_start_params(fitter: SMPLify3D, prediction: TrackPrediction) -> SMPLParams:
    """The SMPL parameters a warm fit starts from: the prediction, with ``transl`` placing the shape's
    rest pelvis at the predicted pelvis (SMPL rotates about the rest pelvis, so the pelvis is
    ``J_0(betas) + transl`` whatever the pose)."""
    dtype = fitter.body.v_template.dtype
    transl = transl_placing_pelvis(fitter, torch.as_tensor(prediction.betas[None], dtype=dtype),
                                   torch.as_tensor(prediction.pelvis[None], dtype=torch.float64))[0]
    return SMPLParams(prediction.global_orient, prediction.body_pose, prediction.betas, transl.numpy())


def transl_placing_pelvis(fitter: SMPLify3D, betas: torch.Tensor, pelvis: torch.Tensor) -> torch.Tensor:
    """(B, 3) SMPL ``transl`` that puts the pelvis of shapes ``betas`` (B, 10) at ``pelvis`` (B, 3) m,
    whatever the pose (SMPL rotates about the rest pelvis, so the pelvis is ``J_0(betas) + transl``);
    CPU tensors in, CPU out in ``pelvis``'s dtype."""
    with torch.no_grad():
        return pelvis - fitter.rest_pelvis(betas.to(fitter.device)).cpu().to(pelvis.dtype)


def judge_fit(fitter: SMPLify3D, inputs: FitInputs, result: FitResult, verdict: VerdictConfig) -> None:
    """Apply the verdict to ``result`` in place (the fitted shapes' rest meshes give the height check)."""
    start = time.perf_counter()
    with torch.no_grad():
        rest = fitter.body(betas=result.betas.to(fitter.device, fitter.body.v_template.dtype)).vertices
    apply_verdict(result, inputs, rest, verdict)
    result.stage_seconds["verdict"] = result.stage_seconds.get("verdict", 0.0) + time.perf_counter() - start


def _fit_group(fitter, inputs, indices, verdict, should_stop, warm: Optional[WarmStart] = None) -> FitResult:
    group = select_persons(inputs, indices)
    result = fitter.fit(group, should_stop=should_stop, warm=warm)
    judge_fit(fitter, group, result, verdict)
    return result


def _fit_warm(fitter, inputs, warm: List[int], start: WarmStart, verdict, should_stop) -> FitResult:
    """The warm fits of the persons ``warm`` (indices into ``inputs``; ``start`` in the same order), as
    one result in that order. When the tracking schedule gives settled shapes fewer stage-2 steps and
    only some of the tracks have settled, the two kinds are fitted as two batches, so that the settled
    ones do not run the longer schedule."""
    schedule = fitter.config.tracking
    settled = [j for j in range(len(warm)) if bool(start.shape_fixed[j])]
    fusing = [j for j in range(len(warm)) if not bool(start.shape_fixed[j])]
    if not settled or not fusing or schedule.settled_stage2_iterations == schedule.stage2_iterations:
        return _fit_group(fitter, inputs, warm, verdict, should_stop, start)
    parts = [(group, _fit_group(fitter, inputs, [warm[j] for j in group], verdict, should_stop,
                                select_persons(start, group)))
             for group in (settled, fusing)]
    return scatter_persons(parts, len(warm))


def fit_tracked_frame(frame: FrameObservation, fitter: SMPLify3D, tracker: PersonTracker, config, stamp: float,
                      T_track_cam: Optional[np.ndarray] = None,
                      complete_inits: Optional[Callable[[List[PersonObservation]], List[Tuple[str, str]]]] = None,
                      should_stop=None) -> TrackedFit:
    """Fit and track the persons of ``frame`` (see the module docstring).

    config: the :class:`~smplify3d_core.pipeline_config.PipelineConfig` (``tracker``, ``verdict``);
    stamp: the frame's time, s; T_track_cam: (4, 4) camera -> tracking frame at ``stamp`` (None: the
    camera frame is the tracking frame); complete_inits: gives persons without an initial estimate
    one, in place (CLIFF), and returns (person, reason) for those it could not; it is called only for
    persons fitted cold. should_stop: see :meth:`SMPLify3D.fit`.
    """
    T_track_cam = np.eye(4) if T_track_cam is None else np.asarray(T_track_cam, dtype=np.float64)
    T_cam_track = np.linalg.inv(T_track_cam)
    persons = list(frame.persons)
    detections = [detection_of(p, T_track_cam, fitter.config.min_lidar_points) for p in persons]
    tracker.begin_frame(stamp)
    matches = tracker.associate(detections, stamp)
    predictions = [tracker.prediction(m, stamp, T_cam_track) if m is not None and config.tracker.warm_start else None
                   for m in matches]

    dropped: List[Tuple[str, str]] = []
    cold_need_init = [p for p, pred in zip(persons, predictions) if pred is None and p.init is None]
    if cold_need_init:
        if complete_inits is None:
            dropped += [(p.tracking_id, "no initial estimate (set cliff_checkpoint, or give one in the observations)")
                        for p in cold_need_init]
        else:
            dropped += complete_inits(cold_need_init)
    fit_index = [i for i, (p, pred) in enumerate(zip(persons, predictions)) if pred is not None or p.init is not None]
    fit_persons, targets, anchors = [], {}, {}
    for k, i in enumerate(fit_index):
        person = persons[i]
        if predictions[i] is not None:
            targets[k] = warm_start_params(fitter, predictions[i])
            anchors[k] = person.init.body_pose if person.init is not None and config.tracker.anchor_to_observation \
                else targets[k].body_pose
            own = person.init
            person = copy.copy(person)
            person.init = targets[k]
            if own is not None and config.tracker.warm_pose == "observation":
                person.init = copy.copy(targets[k])
                person.init.body_pose = own.body_pose
        fit_persons.append(person)
    fitted_frame = copy.copy(frame)
    fitted_frame.persons = fit_persons
    if not fit_persons:
        tracker.update(stamp, detections, matches, [None] * len(persons))
        return TrackedFit(fitted_frame, None, None, [], dropped)

    inputs = FitInputs.from_observations(fit_persons, frame.camera, frame.T_cam_lidar, device=fitter.device,
                                         dtype=fitter.body.v_template.dtype)
    warm = [k for k, i in enumerate(fit_index) if predictions[i] is not None]
    cold = [k for k, i in enumerate(fit_index) if predictions[i] is None]
    parts = []
    if cold:
        parts.append((cold, _fit_group(fitter, inputs, cold, config.verdict, should_stop)))
    restarted: List[int] = []
    if warm:
        dtype = fitter.body.v_template.dtype
        start = WarmStart(
            body_pose=torch.as_tensor(np.stack([targets[k].body_pose for k in warm]), dtype=dtype),
            transl=torch.as_tensor(np.stack([targets[k].transl for k in warm]), dtype=dtype),
            shape_fixed=torch.tensor([predictions[fit_index[k]].shape_settled for k in warm], dtype=torch.bool),
            shape_prior_scale=torch.tensor([1.0 / (1 + predictions[fit_index[k]].shape_frames) for k in warm]),
            anchor_pose=torch.as_tensor(np.stack([anchors[k] for k in warm]), dtype=dtype))
        result = _fit_warm(fitter, inputs, warm, start, config.verdict, should_stop)
        failed = [j for j, k in enumerate(warm) if not bool(result.valid[j])] if config.tracker.restart_on_invalid else []
        if failed:
            restarted = [warm[j] for j in failed]
            kept = [j for j in range(len(warm)) if j not in failed]
            again = _restart_cold(fitter, frame, persons, fit_index, restarted, config, complete_inits, should_stop)
            if again is not None:
                parts.append((restarted, again))
                if kept:
                    parts.append(([warm[j] for j in kept], select_persons(result, kept)))
            else:
                restarted = []
                parts.append((warm, result))
        else:
            parts.append((warm, result))
    merged = scatter_persons(parts, len(fit_persons))
    for k in restarted:
        merged.flags[k].append(RESTART_FLAG)
        tracker.restart(matches[fit_index[k]])

    bodies: List[Optional[FittedBody]] = [None] * len(persons)
    keep_shape_data = fitter.config.tracking.shape_fit_iterations > 0
    for k, i in enumerate(fit_index):
        if not bool(merged.fitted[k]):
            continue
        pelvis = merged.joints[k, 0].double().numpy()
        root = Rotation.from_rotvec(merged.global_orient[k].double().numpy()).as_matrix()
        whole = not cut_off_by_image(persons[i].bbox_xywh, frame.camera, config.tracker.shape_border_px)
        settled = predictions[i] is not None and predictions[i].shape_settled and k not in restarted
        shape_data = None
        if whole and keep_shape_data and not settled and bool(merged.valid[k]):
            shape_data = ShapeFrame(select_persons(inputs, [k]), *(getattr(merged, name)[k:k + 1].clone() for name in
                                                                    ("global_orient", "body_pose", "betas", "transl")))
        bodies[i] = FittedBody(valid=bool(merged.valid[k]), pelvis=transform_points(T_track_cam, pelvis)[0],
                               root_rotation=T_track_cam[:3, :3] @ root, body_pose=merged.body_pose[k].double().numpy(),
                               betas=merged.betas[k].double().numpy(), counts_for_shape=whole, shape_data=shape_data)
    # smoothing needs a recent fit: across a longer gap the filters have nothing to add to the fit
    had_fit = [m is not None and tracker.tracks[m].pose is not None and tracker.tracks[m].last_fit is not None
               and stamp - tracker.tracks[m].last_fit <= config.tracker.max_warm_gap for m in matches]
    ids = tracker.update(stamp, detections, matches, bodies)
    shape_seconds = fit_settled_shapes(fitter, tracker, should_stop)
    if shape_seconds:
        merged.stage_seconds["shape_fit"] = merged.stage_seconds.get("shape_fit", 0.0) + shape_seconds
    if config.tracker.smooth_output:
        smooth = [k for k, i in enumerate(fit_index) if had_fit[i] and bodies[i] is not None and bodies[i].valid]
        publish_smoothed(fitter, tracker, merged, smooth, [ids[fit_index[k]] for k in smooth], T_cam_track,
                         config.tracker.max_smoothing_offset)
    tracks = []
    for k, i in enumerate(fit_index):
        track = tracker.tracks.get(ids[i])
        warm_started = k in warm and k not in restarted
        tracks.append(PersonTrack(ids[i], track.age(stamp) if track is not None else 0.0,
                                  warm_started=warm_started, restarted=k in restarted,
                                  shape_held=warm_started and predictions[i].shape_settled))
    return TrackedFit(fitted_frame, inputs, merged, tracks, dropped)


def publish_smoothed(fitter: SMPLify3D, tracker: PersonTracker, result: FitResult, persons: List[int],
                     track_ids: List[int], T_cam_track: np.ndarray, max_offset: float) -> None:
    """Replace the fitted bodies ``persons`` (indices into ``result``) by their tracks' smoothed bodies, in
    place: body pose from the pose filter, pelvis from the motion filter (``T_cam_track`` (4, 4):
    tracking frame -> camera), root orientation and betas of the fit. A person whose smoothed joints
    lie more than ``max_offset`` m from the fitted ones keeps the fit, and its pose filter is reset
    to it."""
    if not persons:
        return
    smoothed = [tracker.smoothed_body(t) for t in track_ids]  # each track has just taken a valid fit
    dtype = fitter.body.v_template.dtype
    pelvis = torch.as_tensor(np.stack([transform_points(T_cam_track, p)[0] for p, _ in smoothed]), dtype=dtype)
    pose = torch.as_tensor(np.stack([q for _, q in smoothed]), dtype=dtype)
    orient = result.global_orient[persons].to(dtype)
    betas = result.betas[persons].to(dtype)
    transl = transl_placing_pelvis(fitter, betas, pelvis)
    with torch.no_grad():
        out = fitter.body(orient.to(fitter.device), pose.to(fitter.device), betas.to(fitter.device),
                          transl.to(fitter.device))
    vertices, joints = out.vertices.cpu(), out.joints.cpu()
    offset = (joints - result.joints[persons].to(dtype)).norm(dim=-1).amax(dim=1)
    for n, k in enumerate(persons):
        if not bool(offset[n] <= max_offset):
            tracker.reset_pose(track_ids[n], result.body_pose[k].double().numpy())
            continue
        result.body_pose[k] = pose[n].to(result.body_pose.dtype)
        result.transl[k] = transl[n].to(result.transl.dtype)
        result.vertices[k] = vertices[n].to(result.vertices.dtype)
        result.joints[k] = joints[n].to(result.joints.dtype)


def _restart_cold(fitter, frame, persons, fit_index, restarted, config, complete_inits, should_stop) -> Optional[FitResult]:
    """Cold fits of the persons ``restarted`` (indices into the fitted persons) from their own initial
    estimates (CLIFF when they have none); None when one of them cannot get an initial estimate."""
    originals = [copy.copy(persons[fit_index[k]]) for k in restarted]
    missing = [p for p in originals if p.init is None]
    if missing:
        if complete_inits is None or complete_inits(missing):
            return None
    inputs = FitInputs.from_observations(originals, frame.camera, frame.T_cam_lidar, device=fitter.device,
                                         dtype=fitter.body.v_template.dtype)
    return _fit_group(fitter, inputs, list(range(len(originals))), config.verdict, should_stop)
