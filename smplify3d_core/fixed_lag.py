"""Fixed-lag output: each frame is released one frame late, its tracked bodies averaged with their neighbours.

A fit of one frame is noisy (keypoints jitter by a few pixels, LiDAR points by centimetres), and a
causal filter can only trade that noise for lag. Waiting for the next frame removes most of the
noise without lag: the body published for frame t is the weighted mean of the track's bodies at
t − 1, t and t + 1, evaluated at t's stamp, so a person moving at constant speed is neither
delayed nor pulled back. The cost is latency: a frame is published when the next one has been
fitted (one frame interval later; :meth:`FixedLagOutput.flush` releases a held frame at the end
of a stream, and the node does so when no frame has come for a while, or at once when the next
frame is too far away in time to be a neighbour: :meth:`FixedLagOutput.expect`). A frame with no
frame within ``tracker.max_warm_gap`` before it (the first of a stream, or any frame of a stream
slower than that) can never be averaged, so it is not held at all: at low frame rates the output
adds no latency, and what comes out is the same as if it had waited.

:class:`FixedLagOutput` sits after :meth:`~smplify3d_core.pipeline.FrameProcessor.process`: every
caller (the node, ``smplify3d-bag process``, the stream evaluations) pushes each outcome with
whatever it needs to publish that frame (a header, the truth) and publishes what comes back, so a
bag processed offline gives the same bodies as the node.

The average, for a person of track i in frame t (stamp s) whose track also has a valid body in
the frame before (stamp s₋, gap a = s − s₋) and after (s₊, gap b = s₊ − s), both gaps at most
``tracker.max_warm_gap``:

* weights ½ on frame t and ½ on the neighbours' linear interpolation at s, i.e.
  w₋ = ½ · b / (a + b), w₊ = ½ · a / (a + b) (¼, ½, ¼ at an even frame rate);
* the pelvis (m) is averaged in the tracking frame, the root orientation in the tracking frame and
  each of the 23 body-pose rotations as unit quaternions (weighted sum of sign-aligned quaternions,
  normalised: exact for two, close for three near rotations);
* the betas are frame t's; the body is rebuilt with one batched pass (``transl`` placing the
  shape's rest pelvis at the averaged pelvis).

Bodies without both neighbours (a track's first and last frames, gaps, time going backwards),
invalid bodies, and averages whose joints lie more than ``tracker.max_smoothing_offset`` from
frame t's own are released as they are. The neighbours enter with their own (not yet averaged)
bodies, and the tracker never sees the averages: the filter has no feedback.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from smplify3d_core.geometry.transforms import transform_points
from smplify3d_core.types import FrameStatus

__all__ = ["FixedLagOutput", "TrackBody", "average_rotations"]


@dataclass
class TrackBody:
    """A valid published body in the tracking frame: pelvis (3,) m, root (4,) and body-pose (23, 4)
    rotations as unit quaternions (x, y, z, w)."""

    pelvis: np.ndarray
    root: np.ndarray
    pose: np.ndarray


def average_rotations(quaternions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted mean of rotations given as unit quaternions (n, ..., 4) (x, y, z, w), weights (n,)
    summing to 1: each quaternion is flipped into the hemisphere of the first, the weighted sum is
    normalised. Returns (..., 4). Exact on the arc for two rotations; for nearby rotations it is
    within a small fraction of a degree of the rotation that minimises the weighted chordal distances."""
    q = np.asarray(quaternions, dtype=np.float64)
    signs = np.where(np.sum(q * q[:1], axis=-1, keepdims=True) < 0.0, -1.0, 1.0)
    total = np.tensordot(np.asarray(weights, dtype=np.float64), q * signs, axes=(0, 0))
    return total / np.linalg.norm(total, axis=-1, keepdims=True)


def _T_track_cam(outcome) -> np.ndarray:
    """(4, 4) camera -> tracking frame of ``outcome`` (the identity when the camera frame is the tracking frame)."""
    return np.eye(4) if outcome.T_track_cam is None else np.asarray(outcome.T_track_cam, dtype=np.float64)


@dataclass
class _Held:
    outcome: Any
    payload: Any
    bodies: Dict[int, TrackBody]


class FixedLagOutput:
    """One frame of delay with centred averaging (module docstring), or none (``lag_frames`` 0).

    fitter: the :class:`~smplify3d_core.fit.optimizer.SMPLify3D` whose body model rebuilds averaged
    bodies; config: the :class:`~smplify3d_core.pipeline_config.TrackerConfig` (``output_lag_frames``,
    ``max_warm_gap``, ``max_smoothing_offset``).
    """

    def __init__(self, fitter, config) -> None:
        self.fitter = fitter
        self.lag_frames = int(config.output_lag_frames)
        if self.lag_frames not in (0, 1):
            raise ValueError(f"tracker.output_lag_frames must be 0 or 1, got {config.output_lag_frames}")
        self.max_gap = float(config.max_warm_gap)
        self.max_offset = float(config.max_smoothing_offset)
        self._held: Optional[_Held] = None
        self._previous: Optional[Tuple[float, Dict[int, TrackBody]]] = None  # the last released frame's own bodies

    @property
    def holding(self) -> bool:
        """True while a frame waits for its successor."""
        return self._held is not None

    def reset(self) -> None:
        """Forget the held frame (not released) and the previous frame's bodies."""
        self._held = None
        self._previous = None

    def push(self, outcome, payload: Any = None) -> List[Tuple[Any, Any]]:
        """Take the next frame's :class:`~smplify3d_core.pipeline.FrameOutcome` (with ``payload``: what
        the caller needs to publish it) and return the (outcome, payload) pairs now final, in order:
        with no lag the frame itself; else the held frame (averaged using this one), or nothing for
        the first frame. A skipped outcome is returned at once and leaves the held frame waiting."""
        if self.lag_frames == 0 or outcome.status is FrameStatus.SKIPPED:
            return [(outcome, payload)]
        bodies = self._track_bodies(outcome)
        released = self._release(outcome.stamp, bodies)
        self._held = _Held(outcome, payload, bodies)
        if self._without_predecessor(outcome.stamp):  # it can never be averaged: waiting would only delay it
            released += self.flush()
        return released

    def _without_predecessor(self, stamp: Optional[float]) -> bool:
        """True when no frame lies within ``max_warm_gap`` before ``stamp`` (s). A body is averaged only
        with neighbours on both sides, so such a frame goes out as fitted whenever it is released."""
        if stamp is None:
            return False
        previous = self._previous
        return previous is None or previous[0] is None or not 0.0 < stamp - previous[0] <= self.max_gap

    def expect(self, stamp: float) -> List[Tuple[Any, Any]]:
        """The next frame to be fitted has ``stamp`` (s): release the held frame now when that frame cannot
        be its neighbour (further than ``max_warm_gap`` after it, or not after it), else nothing. The
        result is what :meth:`push` would give later, without waiting for the fit (a node whose fits
        take longer than the gap adds no latency)."""
        held = self._held
        if held is None or held.outcome.stamp is None or 0.0 < stamp - held.outcome.stamp <= self.max_gap:
            return []
        return self.flush()

    def flush(self) -> List[Tuple[Any, Any]]:
        """Release the held frame without a successor (the end of a stream): its bodies as they are."""
        return self._release(None, {})

    # ------------------------------------------------------------------------------------------
    def _release(self, next_stamp: Optional[float], next_bodies: Dict[int, TrackBody]) -> List[Tuple[Any, Any]]:
        held = self._held
        if held is None:
            return []
        self._held = None
        stamp = held.outcome.stamp
        previous = self._previous
        self._previous = (stamp, held.bodies)
        if previous is not None and next_stamp is not None and stamp is not None:
            before, after = stamp - previous[0], next_stamp - stamp
            if 0.0 < before <= self.max_gap and 0.0 < after <= self.max_gap:
                self._average(held, previous[1], next_bodies, before, after)
        return [(held.outcome, held.payload)]

    @staticmethod
    def _track_bodies(outcome) -> Dict[int, TrackBody]:
        """Track id -> the outcome's valid bodies in the tracking frame."""
        if outcome.fit is None:
            return {}
        result = outcome.fit.result
        T = _T_track_cam(outcome)
        bodies = {}
        for k, track_id in enumerate(outcome.track_ids):
            if not bool(result.valid[k]):
                continue
            pelvis = transform_points(T, result.joints[k, 0].double().numpy())[0]
            root = Rotation.from_matrix(T[:3, :3] @ Rotation.from_rotvec(result.global_orient[k].double().numpy()).as_matrix())
            pose = Rotation.from_rotvec(result.body_pose[k].double().numpy().reshape(23, 3))
            bodies[int(track_id)] = TrackBody(pelvis, root.as_quat(), pose.as_quat())
        return bodies

    def _average(self, held: _Held, before: Dict[int, TrackBody], after: Dict[int, TrackBody], gap_before: float,
                 gap_after: float) -> None:
        """Replace, in place, the held frame's bodies that have both neighbours by their centred averages."""
        outcome = held.outcome
        # own frame first (the quaternions' reference hemisphere), then the frames before and after
        weights = np.array([0.5, 0.5 * gap_after / (gap_before + gap_after), 0.5 * gap_before / (gap_before + gap_after)])
        persons, pelvises, roots, poses = [], [], [], []
        for k, track_id in enumerate(outcome.track_ids):
            own = held.bodies.get(int(track_id))
            if own is None or int(track_id) not in before or int(track_id) not in after:
                continue
            trio = (own, before[int(track_id)], after[int(track_id)])
            persons.append(k)
            pelvises.append(np.tensordot(weights, np.stack([b.pelvis for b in trio]), axes=(0, 0)))
            roots.append(average_rotations(np.stack([b.root for b in trio]), weights))
            poses.append(average_rotations(np.stack([b.pose for b in trio]), weights))
        if not persons:
            return
        result = outcome.fit.result
        T_cam_track = np.linalg.inv(_T_track_cam(outcome))
        pelvis_cam = transform_points(T_cam_track, np.stack(pelvises))
        root_cam = Rotation.from_matrix(T_cam_track[:3, :3] @ Rotation.from_quat(np.stack(roots)).as_matrix())
        pose = Rotation.from_quat(np.stack(poses).reshape(-1, 4)).as_rotvec().reshape(len(persons), 69)
        body = self.fitter.body
        dtype, device = body.v_template.dtype, self.fitter.device
        betas = result.betas[persons].to(device, dtype)
        with torch.no_grad():
            transl = torch.as_tensor(pelvis_cam, dtype=dtype, device=device) - self.fitter.rest_pelvis(betas)
            orient = torch.as_tensor(root_cam.as_rotvec(), dtype=dtype, device=device)
            body_pose = torch.as_tensor(pose, dtype=dtype, device=device)
            out = body(orient, body_pose, betas, transl)
        vertices, joints = out.vertices.cpu(), out.joints.cpu()
        offset = (joints - result.joints[persons].to(joints.dtype)).norm(dim=-1).amax(dim=1)
        for n, k in enumerate(persons):
            if not bool(offset[n] <= self.max_offset):
                continue
            result.global_orient[k] = orient[n].cpu().to(result.global_orient.dtype)
            result.body_pose[k] = body_pose[n].cpu().to(result.body_pose.dtype)
            result.transl[k] = transl[n].cpu().to(result.transl.dtype)
            result.vertices[k] = vertices[n].to(result.vertices.dtype)
            result.joints[k] = joints[n].to(result.joints.dtype)
