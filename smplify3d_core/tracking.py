"""Multi-person tracking for live fitting: association, motion prediction, track life, per-track shape.

The tracker works in a fixed *tracking frame* (``odom`` on a robot, given per frame as the
transform ``T_track_cam``; the camera frame itself when the robot does not move), so that the
robot's own motion is not mistaken for the person's.

Per frame, before the fit:

1. :meth:`PersonTracker.begin_frame` ends tracks not seen for ``max_age`` seconds that also went
   unmatched in at least ``min_missed_frames`` frames (deaths: a node whose frames come further
   apart than ``max_age`` keeps its ids) and clears everything when time went backwards (a looping
   bag, a restarted simulator).
2. :meth:`PersonTracker.associate` matches the frame's :class:`Detection` s to the tracks: a
   detection with LiDAR points is placed at the median of its points (its cluster) and compared
   with each track's constant-velocity prediction (a Kalman filter on the pelvis, plus the track's
   learnt offset between pelvis and point median) and its last box; the cost is
   ``distance / gate + box_weight * (1 - IoU)``, solved optimally (Hungarian). A detection without
   points (occluded, or too far) can only be matched by its box. Unmatched detections are births.
3. :meth:`PersonTracker.prediction` gives a matched track's predicted body in the camera frame
   (pelvis moved with the track's velocity, the filtered pose moved on with its rate, the last
   fit's root orientation, the track's fused shape), from which the fit starts warm.

After the fit, :meth:`PersonTracker.update` feeds each person's fitted body back: a valid fit
updates the motion filter, the pose filter and the fused shape (mean betas over the track's good
frames, the fits that show the whole person: ``FittedBody.counts_for_shape``); an invalid one only
moves the track with its points. Once ``shape_frames`` fits are fused the shape is *settled* and
held; the caller may then replace the mean by one shape fitted to those frames together
(:meth:`PersonTracker.shape_fits_due`, :meth:`PersonTracker.set_shape`), from the data it kept with
each fit (``FittedBody.shape_data``, opaque to the tracker).

The pose filter is a constant-velocity (alpha-beta) filter on the 69 body-pose angles: with the
filtered pose θ_f and rate θ̇ of the last fit, a new fit θ ``dt`` seconds later and the prediction
``θ̂ = θ_f + dt · θ̇``, the filtered pose becomes ``θ̂ + pose_alpha · (θ − θ̂)`` and the rate
``θ̇ + pose_beta · (θ − θ̂) / dt``
(``pose_alpha = pose_beta = 1``: the fit itself and its last frame-to-frame change). A fit more
than ``max_warm_gap`` after the last one restarts the filter (the fit, rate 0). The filtered
pose and the filtered pelvis (the motion filter's position) are what
:meth:`PersonTracker.smoothed_body` gives for publishing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.transform import Rotation

from smplify3d_core.geometry.transforms import transform_points


NO_MATCH_COST = 1e6
TIME_JUMP_S = 0.5  # a stamp this far before the previous frame's restarts the tracker
WALKING_SPEED = 1.5  # m/s: how fast the gate widens while a track goes unseen (up to 2x max_distance more)
MAX_EXTRAPOLATION_S = 1.0  # constant velocity is trusted this long past a track's last detection


@dataclass
class Detection:
    """One person of a frame as the tracker sees it before the fit.

    position: (3,) metres in the tracking frame (median of the person's LiDAR points), or None
        when the person has too few points; box_xywh: (4,) pixels.
    """

    position: Optional[np.ndarray]
    box_xywh: np.ndarray


@dataclass
class FittedBody:
    """A fitted person, fed back to its track. Camera frame as fitted; ``pelvis`` (3,) m and
    ``root_rotation`` (3, 3) are in the tracking frame. counts_for_shape: the fit may be fused into
    the track's shape (False for a person the image cuts off); shape_data: what the caller needs to
    fit the track's shape to this frame again (kept with the track until its shape is settled)."""

    valid: bool
    pelvis: np.ndarray
    root_rotation: np.ndarray
    body_pose: np.ndarray
    betas: np.ndarray
    counts_for_shape: bool = True
    shape_data: Optional[object] = None


@dataclass
class Track:
    """One tracked person.

    id: the track id (never reused); born, last_seen, last_fit: stamps (s) of its first frame,
    its last matched frame and its last valid fit; state (6,) pelvis position and velocity in the
    tracking frame (m, m/s) with covariance ``covariance`` (6, 6); offset (3,) point median minus
    pelvis (m, tracking frame); box: last box (px); pose (69,) rad and pose_rate (69,) rad/s: the pose
    filter's state at ``pose_stamp`` (s; None before the first valid fit); root_rotation (3, 3) of the
    last valid fit (tracking frame); shape_sum / good_frames: sum of the betas of the fused fits and
    their number; shape_data: the fused fits' ``FittedBody.shape_data`` (until the shape is settled);
    shape_fitted: the settled shape was replaced by :meth:`PersonTracker.set_shape`; missed_frames:
    frames in a row in which the track went unmatched.
    """

    id: int
    born: float
    last_seen: float
    state: np.ndarray
    covariance: np.ndarray
    box: np.ndarray
    last_fit: Optional[float] = None
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))
    pose: Optional[np.ndarray] = None
    pose_rate: np.ndarray = field(default_factory=lambda: np.zeros(69))
    pose_stamp: Optional[float] = None
    root_rotation: Optional[np.ndarray] = None
    shape_sum: np.ndarray = field(default_factory=lambda: np.zeros(10))
    good_frames: int = 0
    shape_data: list = field(default_factory=list)
    shape_fitted: bool = False
    last_betas: Optional[np.ndarray] = None
    missed_frames: int = 0

    @property
    def shape(self) -> Optional[np.ndarray]:
        """(10,) the fused betas (mean over the fused fits; the last valid fit's betas while none could be
        fused), or None before the first valid fit."""
        return self.shape_sum / self.good_frames if self.good_frames else self.last_betas

    def age(self, stamp: float) -> float:
        """Seconds since the track was born."""
        return float(stamp - self.born)


@dataclass
class TrackPrediction:
    """A track's predicted body for the frame at hand (camera frame): the warm start of its fit.

    global_orient: (3,) axis-angle, rad; body_pose: (69,) rad; betas: (10,) the fused shape;
    pelvis: (3,) m (SMPL's ``transl`` is this minus the shape's rest pelvis); shape_frames: valid
    fits fused into ``betas``; shape_settled: there are enough of them for the shape to be held fixed.
    """

    global_orient: np.ndarray
    body_pose: np.ndarray
    betas: np.ndarray
    pelvis: np.ndarray
    shape_frames: int
    shape_settled: bool


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (4,) boxes x, y, width, height (pixels)."""
    ax1, ay1, aw, ah = (float(v) for v in a)
    bx1, by1, bw, bh = (float(v) for v in b)
    w = min(ax1 + aw, bx1 + bw) - max(ax1, bx1)
    h = min(ay1 + ah, by1 + bh) - max(ay1, by1)
    inter = max(w, 0.0) * max(h, 0.0)
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


class PersonTracker:
    """Tracks persons over a stream of frames (see the module docstring).

    config: a :class:`~smplify3d_core.pipeline_config.TrackerConfig` (gate ``max_distance`` m,
    ``max_age`` s, ``box_weight``, ``max_warm_gap`` s, ``acceleration_noise`` m/s²,
    ``position_noise`` m, ``pose_extrapolation``, ``pose_alpha``, ``pose_beta``, ``shape_frames``).
    """

    def __init__(self, config) -> None:
        self.config = config
        self.tracks: Dict[int, Track] = {}
        self._next_id = 0
        self._last_stamp: Optional[float] = None
        self.births: List[int] = []
        self.deaths: List[int] = []

    def reset(self) -> None:
        """Forget every track (ids keep counting up, so an id is never given twice)."""
        self.tracks.clear()
        self._last_stamp = None

    # ------------------------------------------------------------------ per frame
    def begin_frame(self, stamp: float) -> None:
        """Start the frame at ``stamp`` (s): end tracks unseen for more than ``max_age`` s that went unmatched
        in at least ``min_missed_frames`` frames; restart when time went backwards by more than half a
        second."""
        stamp = float(stamp)
        self.births, self.deaths = [], []
        if self._last_stamp is not None and stamp < self._last_stamp - TIME_JUMP_S:
            self.deaths = sorted(self.tracks)
            self.reset()
        self._last_stamp = stamp
        for track_id in sorted(self.tracks):
            track = self.tracks[track_id]
            if stamp - track.last_seen > self.config.max_age and track.missed_frames >= self.config.min_missed_frames:
                self.deaths.append(track_id)
                del self.tracks[track_id]

    def predicted_pelvis(self, track: Track, stamp: float) -> np.ndarray:
        """(3,) the track's pelvis at ``stamp`` (constant velocity for at most a second), tracking frame, m."""
        dt = min(max(0.0, stamp - track.last_seen), MAX_EXTRAPOLATION_S)
        return track.state[:3] + dt * track.state[3:]

    def _gate(self, track: Track, stamp: float) -> float:
        """Association gate, m: ``max_distance``, widened at walking speed while a track goes unseen (by at
        most twice ``max_distance``)."""
        unseen = max(0.0, stamp - track.last_seen - 0.15)
        return self.config.max_distance + min(WALKING_SPEED * unseen, 2.0 * self.config.max_distance)

    def associate(self, detections: Sequence[Detection], stamp: float) -> List[Optional[int]]:
        """The track id of each detection (None: a new person), optimal over the frame."""
        stamp = float(stamp)
        result: List[Optional[int]] = [None] * len(detections)
        track_ids = sorted(self.tracks)
        if not track_ids or not detections:
            return result
        tracks = [self.tracks[i] for i in track_ids]
        cost = np.full((len(detections), len(tracks)), NO_MATCH_COST)
        for d, detection in enumerate(detections):
            for t, track in enumerate(tracks):
                iou = box_iou(detection.box_xywh, track.box)
                if detection.position is not None:
                    distance = float(np.linalg.norm(detection.position - self.predicted_pelvis(track, stamp)
                                                    - track.offset))
                    gate = self._gate(track, stamp)
                    if distance <= gate:
                        cost[d, t] = distance / gate + self.config.box_weight * (1.0 - iou)
                elif iou >= 0.3:  # no points: only the box can say who it is
                    cost[d, t] = 1.0 + self.config.box_weight * (1.0 - iou)
        rows, cols = linear_sum_assignment(cost)
        for d, t in zip(rows, cols):
            if cost[d, t] < NO_MATCH_COST:
                result[d] = track_ids[t]
        return result

    def prediction(self, track_id: int, stamp: float, T_cam_track: np.ndarray) -> Optional[TrackPrediction]:
        """The warm start of track ``track_id`` at ``stamp`` in the camera frame (``T_cam_track``
        (4, 4): tracking frame -> camera), or None when the track has no valid fit within
        ``max_warm_gap`` s (it is then fitted cold)."""
        track = self.tracks[track_id]
        if track.last_fit is None or track.pose is None or stamp - track.last_fit > self.config.max_warm_gap:
            return None
        pose = self._predicted_pose(track, stamp, self.config.pose_extrapolation)
        pelvis_cam = transform_points(T_cam_track, self.predicted_pelvis(track, stamp))[0]
        root = T_cam_track[:3, :3] @ track.root_rotation
        return TrackPrediction(Rotation.from_matrix(root).as_rotvec(), pose, track.shape, pelvis_cam, track.good_frames,
                               track.good_frames >= self.config.shape_frames)

    def update(self, stamp: float, detections: Sequence[Detection], matches: Sequence[Optional[int]],
               bodies: Sequence[Optional[FittedBody]]) -> List[int]:
        """Feed the frame's fits back; returns one track id per detection.

        matches: :meth:`associate`'s answer; bodies: the fitted body of each detection (None: not
        fitted). An unmatched detection with points starts a track (a birth); one without points
        gets a fresh id and no track (nothing to follow it by).
        """
        stamp = float(stamp)
        ids: List[int] = []
        for detection, match, body in zip(detections, matches, bodies):
            if match is None:
                track_id = self._next_id
                self._next_id += 1
                ids.append(track_id)
                if detection.position is None and (body is None or not body.valid):
                    continue
                start = body.pelvis if body is not None and body.valid else detection.position
                track = Track(id=track_id, born=stamp, last_seen=stamp, state=np.concatenate([start, np.zeros(3)]),
                              covariance=np.diag([self.config.position_noise ** 2] * 3 + [1.0] * 3),
                              box=np.asarray(detection.box_xywh, dtype=np.float64))
                self.tracks[track_id] = track
                self.births.append(track_id)
                if body is not None and body.valid:
                    self._take_fit(track, detection, body, stamp)
                continue
            track = self.tracks[match]
            ids.append(match)
            self._predict(track, stamp)
            track.box = np.asarray(detection.box_xywh, dtype=np.float64)
            track.last_seen = stamp
            if body is not None and body.valid:
                self._correct(track, body.pelvis)
                self._take_fit(track, detection, body, stamp)
            elif detection.position is not None:
                self._correct(track, detection.position - track.offset)
        matched = {m for m in matches if m is not None}
        for track_id, track in self.tracks.items():
            track.missed_frames = 0 if track_id in matched or track_id in self.births else track.missed_frames + 1
        return ids

    def smoothed_body(self, track_id: int):
        """(pelvis (3,) m in the tracking frame, body pose (69,) rad) of track ``track_id`` after the
        frame's update: the motion filter's position and the pose filter's pose; None when the track
        has no valid fit."""
        track = self.tracks.get(track_id)
        if track is None or track.pose is None:
            return None
        return track.state[:3].copy(), track.pose.copy()

    def restart(self, track_id: int) -> None:
        """Forget a track's fit (pose, shape): its next fit starts cold. Its id and motion are kept."""
        track = self.tracks.get(track_id)
        if track is not None:
            track.last_fit = None
            track.pose = track.pose_stamp = None
            track.pose_rate = np.zeros(69)
            track.shape_sum = np.zeros(10)
            track.good_frames = 0
            track.shape_data = []
            track.shape_fitted = False
            track.last_betas = None

    def shape_fits_due(self) -> Dict[int, list]:
        """Track id -> the kept ``shape_data`` of the fits fused into its shape, for each track whose
        shape has just settled (``shape_frames`` fits) and has not been fitted yet."""
        return {track_id: list(track.shape_data) for track_id, track in sorted(self.tracks.items())
                if track.good_frames >= self.config.shape_frames and not track.shape_fitted and track.shape_data}

    def set_shape(self, track_id: int, betas: Optional[np.ndarray]) -> None:
        """Settle track ``track_id``'s shape to ``betas`` (10,) (None: keep the mean of its fits) and drop
        its kept shape data."""
        track = self.tracks.get(track_id)
        if track is None:
            return
        if betas is not None and track.good_frames:
            track.shape_sum = np.asarray(betas, dtype=np.float64) * track.good_frames
        track.shape_data = []
        track.shape_fitted = True

    # ------------------------------------------------------------------ motion and pose filters
    @staticmethod
    def _predicted_pose(track: Track, stamp: float, scale: float = 1.0) -> np.ndarray:
        """(69,) the filtered pose moved on with ``scale`` times its rate to ``stamp`` (for at most
        ``MAX_EXTRAPOLATION_S``)."""
        dt = min(max(0.0, stamp - track.pose_stamp), MAX_EXTRAPOLATION_S)
        return track.pose + scale * dt * track.pose_rate

    def _filter_pose(self, track: Track, fitted_pose: np.ndarray, stamp: float) -> None:
        dt = stamp - track.pose_stamp if track.pose is not None else 0.0
        if dt <= 0.0:  # the first fit (or a second one at the same stamp) is taken as it is
            track.pose = fitted_pose.copy()
        elif dt > self.config.max_warm_gap:  # too long a gap to filter across: the fit, at rest
            track.pose = fitted_pose.copy()
            track.pose_rate = np.zeros_like(track.pose_rate)
        else:
            predicted = self._predicted_pose(track, stamp)
            innovation = fitted_pose - predicted
            track.pose = predicted + self.config.pose_alpha * innovation
            track.pose_rate = track.pose_rate + self.config.pose_beta * innovation / dt
        track.pose_stamp = stamp

    def reset_pose(self, track_id: int, body_pose: np.ndarray) -> None:
        """Set track ``track_id``'s filtered pose to ``body_pose`` (69,) rad, keeping its rate (the
        published body had drifted from the fit)."""
        track = self.tracks.get(track_id)
        if track is not None and track.pose is not None:
            track.pose = np.asarray(body_pose, dtype=np.float64).copy()

    def _predict(self, track: Track, stamp: float) -> None:
        dt = max(0.0, stamp - track.last_seen)
        if dt == 0.0:
            return
        F = np.eye(6)
        F[:3, 3:] = dt * np.eye(3)
        a2 = self.config.acceleration_noise ** 2
        q = np.block([[dt ** 4 / 4 * np.eye(3), dt ** 3 / 2 * np.eye(3)], [dt ** 3 / 2 * np.eye(3), dt ** 2 * np.eye(3)]])
        track.state = F @ track.state
        track.covariance = F @ track.covariance @ F.T + a2 * q

    def _correct(self, track: Track, measured_pelvis: np.ndarray) -> None:
        H = np.hstack([np.eye(3), np.zeros((3, 3))])
        S = H @ track.covariance @ H.T + self.config.position_noise ** 2 * np.eye(3)
        gain = track.covariance @ H.T @ np.linalg.inv(S)
        track.state = track.state + gain @ (np.asarray(measured_pelvis, dtype=np.float64) - H @ track.state)
        track.covariance = (np.eye(6) - gain @ H) @ track.covariance

    def _take_fit(self, track: Track, detection: Detection, body: FittedBody, stamp: float) -> None:
        if detection.position is not None:
            offset = detection.position - body.pelvis
            track.offset = offset if track.good_frames == 0 else 0.7 * track.offset + 0.3 * offset
        self._filter_pose(track, np.asarray(body.body_pose, dtype=np.float64), stamp)
        track.root_rotation = np.asarray(body.root_rotation, dtype=np.float64)
        track.last_betas = np.asarray(body.betas, dtype=np.float64).copy()
        if track.good_frames < self.config.shape_frames and body.counts_for_shape:  # once settled, held
            track.shape_sum = track.shape_sum + np.asarray(body.betas, dtype=np.float64)
            track.good_frames += 1
            if body.shape_data is not None:
                track.shape_data.append(body.shape_data)
        track.last_fit = stamp
