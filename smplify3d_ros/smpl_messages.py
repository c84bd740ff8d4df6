"""Fit results <-> the package's own messages, ``smplify3d_ros/SMPL`` and ``SMPLArray``.

Small pure functions (no node, no publishing):

* :func:`smpl_from_fit` — person ``b`` of a :class:`~smplify3d_core.fit.optimizer.FitResult`
  -> ``SMPL``;
* :func:`smpl_array_from_fit` — all persons of a frame, with the per-stage timings -> ``SMPLArray``;
* :func:`params_from_smpl`, :func:`joints_from_smpl`, :func:`vertices_from_smpl`,
  :func:`stage_seconds_from_array` — back from the messages to the core's types / arrays.

Everything is in the camera optical frame (``header.frame_id``), metres and radians, as the
fit result is. The messages are built by ``scripts/build_msgs.sh`` (or colcon).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Vector3
from std_msgs.msg import Header

from smplify3d_ros.markers import points_from_array
from smplify3d_core.types import PersonObservation, PersonTruth, SMPLParams
from smplify3d_ros.msg import SMPL, Observation, ObservationArray, SMPLArray

__all__ = [
    "joints_from_smpl",
    "observations_from_message",
    "observations_to_message",
    "truth_to_smpl_array",
    "params_from_smpl",
    "smpl_array_from_fit",
    "smpl_from_fit",
    "stage_seconds_from_array",
    "vertices_from_smpl",
]

_UINT32_MAX = 2**32 - 1


def _numpy(value) -> np.ndarray:
    """A torch tensor or array-like as a NumPy array (detached, on the CPU)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _copy_header(header: Optional[Header]) -> Header:
    """An independent copy of ``header`` (an empty Header when None)."""
    if header is None:
        return Header()
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id)


def _points(xyz: np.ndarray) -> list:
    """(N, 3) metres -> [geometry_msgs/Point]."""
    return [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in np.asarray(xyz, dtype=np.float64).reshape(-1, 3)]


def _xyz(points: Sequence[Point]) -> np.ndarray:
    """[geometry_msgs/Point] -> (N, 3) float64, metres."""
    return np.array([(p.x, p.y, p.z) for p in points], dtype=np.float64).reshape(-1, 3)


def _uint32(value: int, name: str) -> int:
    value = int(value)
    if not 0 <= value <= _UINT32_MAX:
        raise ValueError(f"{name} must fit in uint32, got {value}")
    return value


def smpl_from_fit(result, b: int, track_id: int, header: Optional[Header] = None, include_vertices: bool = False,
                  track=None) -> SMPL:
    """Person ``b`` of ``result`` (a ``FitResult``) as an ``SMPL`` message.

    track_id: the tracker's id of this person (uint32); header: stamp and camera optical frame
    (copied); include_vertices: also fill ``vertices`` (6890 points, about 160 kB per person);
    track: the person's :class:`~smplify3d_core.tracked_fit.PersonTrack` (age, warm start), or None.
    Parameters are written as float32; non-finite fit-quality numbers pass through as NaN/inf. The
    verdict's measures (``point_residual_m``, ``height_m``, ``depth_offset_m``, ``range_m``) are NaN
    when the result was not judged (``result.verdict`` None) or the check could not run.
    """
    batch = int(result.global_orient.shape[0])
    if not 0 <= b < batch:
        raise IndexError(f"person index {b} out of range for a fit of {batch} person(s)")
    msg = SMPL()
    msg.header = _copy_header(header)
    msg.track_id = _uint32(track_id, "track_id")
    if track is not None:
        msg.track_age_s = float(track.age_s)
        msg.warm_started = bool(track.warm_started)
    msg.global_orient = _numpy(result.global_orient[b]).astype(np.float32).reshape(3)
    msg.body_pose = _numpy(result.body_pose[b]).astype(np.float32).reshape(69)
    betas = _numpy(result.betas[b]).astype(np.float32).reshape(-1)
    if betas.size > 10:
        raise ValueError(f"the message holds 10 betas, the fit has {betas.size}")
    msg.betas = np.pad(betas, (0, 10 - betas.size))
    tx, ty, tz = (float(v) for v in _numpy(result.transl[b]).reshape(3))
    msg.translation = Vector3(x=tx, y=ty, z=tz)
    msg.joints = _points(_numpy(result.joints[b])[:24])
    msg.reprojection_error_px = float(_numpy(result.reprojection_error_px[b]))
    msg.chamfer_m2 = float(_numpy(result.chamfer_m2[b]))
    verdict = getattr(result, "verdict", None)
    for name in ("point_residual_m", "height_m", "depth_offset_m", "range_m"):
        setattr(msg, name, float("nan") if verdict is None else float(_numpy(getattr(verdict, name)[b])))
    msg.lidar_point_count = _uint32(_numpy(result.lidar_point_count[b]), "lidar_point_count")
    msg.visible_body_parts = [str(p) for p in result.visible_parts[b]]
    msg.valid = bool(_numpy(result.valid[b]))
    msg.flags = [str(f) for f in result.flags[b]]
    if include_vertices:
        msg.vertices = _points(_numpy(result.vertices[b]))
    return msg


def smpl_array_from_fit(
    result,
    header: Optional[Header] = None,
    track_ids: Optional[Sequence[int]] = None,
    stage_seconds: Optional[Mapping[str, float]] = None,
    include_vertices: bool = False,
    tracks: Optional[Sequence] = None,
) -> SMPLArray:
    """All persons of a frame's ``FitResult`` as an ``SMPLArray`` (persons in the fit's order).

    header: stamp of the camera image and its optical frame (copied into every person);
    track_ids: one per person (default 0..B-1); stage_seconds: name -> seconds for the frame
    (default ``result.stage_seconds``; pass ``FrameOutcome.stage_seconds`` to include the
    perception stages); include_vertices: see :func:`smpl_from_fit`; tracks: one
    :class:`~smplify3d_core.tracked_fit.PersonTrack` per person (age, warm start), or None.
    ``result`` may be None (no person found): the array is then empty but keeps the timings.
    """
    msg = SMPLArray()
    msg.header = _copy_header(header)
    batch = 0 if result is None else int(result.global_orient.shape[0])
    if track_ids is None:
        track_ids = range(batch)
    track_ids = list(track_ids)
    if len(track_ids) != batch:
        raise ValueError(f"{len(track_ids)} track ids for {batch} person(s)")
    tracks = list(tracks) if tracks is not None else [None] * batch
    msg.persons = [smpl_from_fit(result, b, track_ids[b], header, include_vertices, tracks[b]) for b in range(batch)]
    if stage_seconds is None:
        stage_seconds = {} if result is None else result.stage_seconds
    msg.stage_names = [str(name) for name in stage_seconds]
    msg.stage_seconds = [float(seconds) for seconds in stage_seconds.values()]
    return msg


def params_from_smpl(msg: SMPL) -> SMPLParams:
    """The SMPL parameters of an ``SMPL`` message (camera frame, radians, metres)."""
    t = msg.translation
    return SMPLParams(
        global_orient=np.asarray(msg.global_orient, dtype=np.float64),
        body_pose=np.asarray(msg.body_pose, dtype=np.float64),
        betas=np.asarray(msg.betas, dtype=np.float64),
        transl=np.array([t.x, t.y, t.z], dtype=np.float64),
    )


def joints_from_smpl(msg: SMPL) -> np.ndarray:
    """The 24 SMPL joints of an ``SMPL`` message, (24, 3) metres in the camera frame."""
    return _xyz(msg.joints)


def vertices_from_smpl(msg: SMPL) -> np.ndarray:
    """The mesh vertices of an ``SMPL`` message, (V, 3) metres; (0, 3) when they were not sent."""
    return _xyz(msg.vertices)


def stage_seconds_from_array(msg: SMPLArray) -> dict:
    """The per-stage timings of an ``SMPLArray``, name -> seconds."""
    if len(msg.stage_names) != len(msg.stage_seconds):
        raise ValueError(f"{len(msg.stage_names)} stage names for {len(msg.stage_seconds)} timings")
    return {name: float(seconds) for name, seconds in zip(msg.stage_names, msg.stage_seconds)}


def observations_to_message(persons: Sequence[PersonObservation], header: Optional[Header] = None) -> ObservationArray:
    """Per-person boxes, keypoints and initial estimates -> ``ObservationArray``.

    Tracking ids that are not non-negative integers are numbered by position.
    """
    msg = ObservationArray()
    msg.header = _copy_header(header)
    for index, person in enumerate(persons):
        item = Observation()
        item.track_id = int(person.tracking_id) if str(person.tracking_id).isdigit() else index
        item.bbox_xywh = [float(v) for v in person.bbox_xywh]
        item.keypoints = np.asarray(person.keypoints, dtype=np.float32).reshape(-1).tolist()
        item.has_init = person.init is not None
        if person.init is not None:
            item.global_orient = person.init.global_orient.astype(np.float32).tolist()
            item.body_pose = person.init.body_pose.astype(np.float32).tolist()
            item.betas = person.init.betas.astype(np.float32).tolist()
            item.translation = Vector3(x=float(person.init.transl[0]), y=float(person.init.transl[1]),
                                       z=float(person.init.transl[2]))
        msg.persons.append(item)
    return msg


def observations_from_message(msg: ObservationArray) -> list:
    """``ObservationArray`` -> PersonObservation list (no LiDAR points yet: the node crops them)."""
    persons = []
    for item in msg.persons:
        init = None
        if item.has_init:
            t = item.translation
            init = SMPLParams(_numpy(item.global_orient), _numpy(item.body_pose), _numpy(item.betas), [t.x, t.y, t.z])
        persons.append(PersonObservation(
            tracking_id=str(item.track_id), bbox_xywh=_numpy(item.bbox_xywh),
            keypoints=_numpy(item.keypoints).reshape(17, 3), lidar_visibility=np.zeros(17),
            points=np.zeros((0, 3)), init=init,
        ))
    return persons


def truth_to_smpl_array(truth: Mapping[str, PersonTruth], header: Optional[Header] = None) -> SMPLArray:
    """Ground-truth bodies (the simulator's) as an ``SMPLArray`` with their vertices."""
    msg = SMPLArray()
    msg.header = _copy_header(header)
    for tracking_id, person in truth.items():
        item = SMPL()
        item.header = _copy_header(header)
        item.track_id = _uint32(int(tracking_id) if str(tracking_id).isdigit() else len(msg.persons), "track_id")
        item.global_orient = person.smpl.global_orient.astype(np.float32).tolist()
        item.body_pose = person.smpl.body_pose.astype(np.float32).tolist()
        item.betas = person.smpl.betas.astype(np.float32).tolist()
        t = person.smpl.transl
        item.translation = Vector3(x=float(t[0]), y=float(t[1]), z=float(t[2]))
        item.joints = _points(person.joints)
        item.vertices = points_from_array(person.vertices)
        item.valid = True
        msg.persons.append(item)
    return msg


def smpl_array_from_outcome(outcome, header: Optional[Header] = None, include_vertices: bool = False) -> SMPLArray:
    """The ``SMPLArray`` of a frame's :class:`~smplify3d_core.pipeline.FrameOutcome` (fitted or empty),
    with the tracker's ids and every stage's time (perception and fit)."""
    result = None if outcome.fit is None else outcome.fit.result
    return smpl_array_from_fit(result, header, outcome.track_ids if result is not None else [], outcome.stage_seconds,
                               include_vertices=include_vertices, tracks=outcome.tracks if result is not None else None)


def errors_against_truth(joints: np.ndarray, vertices: Optional[np.ndarray], truth_msg: SMPLArray) -> dict:
    """Errors of fitted bodies against the true bodies of a ground-truth ``SMPLArray``, in millimetres.

    joints: (B, 24, 3) fitted SMPL joints, metres, camera frame; vertices: (B, V, 3) or None. Each
    fitted body is compared with the true body whose pelvis is nearest. Returns lists (one value
    per person) under ``mpjpe_mm`` and ``pelvis_error_mm``, and ``pve_mm`` when vertices are given
    and the true bodies carry vertices of the same count (pelvis-aligned, as
    :func:`smplify3d_core.eval.metrics.score_against_truth` computes them).
    """
    from smplify3d_core.eval.metrics import score_against_truth

    joints = np.asarray(joints, dtype=np.float64).reshape(-1, 24, 3)
    truths = [(joints_from_smpl(p), vertices_from_smpl(p)) for p in truth_msg.persons]
    if not truths or not len(joints):
        return {"mpjpe_mm": [], "pelvis_error_mm": [], "pve_mm": []}
    match = [min(range(len(truths)), key=lambda t: np.linalg.norm(truths[t][0][0] - j[0])) for j in joints]
    true_joints = np.stack([truths[t][0] for t in match])
    with_vertices = vertices is not None and all(len(truths[t][1]) == np.asarray(vertices).shape[1] for t in match)
    scores = score_against_truth(np.asarray(vertices, dtype=np.float64) if with_vertices else None, joints,
                                 np.stack([truths[t][1] for t in match]) if with_vertices else None, true_joints)
    return {"mpjpe_mm": scores["mpjpe_mm"].tolist(), "pelvis_error_mm": scores["pelvis_error_mm"].tolist(),
            "pve_mm": scores["pve_mm"].tolist() if with_vertices else []}
