"""Simulated sequences: the same people moving smoothly in front of a (still or driving) sensor rig.

:class:`SequencePlan` is the scripted world of a sequence. It is cheap (no rendering) and
deterministic for its :class:`SequenceSettings`; :meth:`SequencePlan.simulate_frame` renders one
frame of it with :func:`~smplify3d_core.sim.scene.simulate_scene`, and :func:`simulate_sequence`
renders the ``settings.frames`` first frames.

Frames
    World frame = ``odom`` (REP-103: x forward, y left, z up; the ground is z = 0). The sensor rig
    drives on the ground; its camera (optical frame: x right, y down, z forward) sits
    ``preset.camera_height`` metres above the ground with the optical axis horizontal, along the
    rig heading. ``T_odom_cam(t)`` (4×4) maps camera-frame points to odom. With a still rig
    (``moving_robot=False``) the camera stands at the odom origin looking along +x.

People
    Person ``"p<i>"`` keeps its betas (drawn as :func:`~smplify3d_core.sim.scene.simulate_scene`
    draws random persons': N(0, betas_sigma²), clipped) and follows a script in odom, a function of
    time t (seconds, any t ≥ 0: the scripts go on for ever, choosing new waypoints in the region in
    view of the still camera, depths ``distance_range`` ± 0.5 m). A script is a chain of legs:

    * walks along a path of circular arcs (radius 1.5 m) and straight lines at the person's
      cruise speed (1.0–1.4 m/s), starting and ending at rest with a 1.2 s cosine speed ramp
      (≤ 1.6 m/s² along the path, ≤ 1.3 m/s² across it, heading rate ≤ 0.94 rad/s); the body yaw
      follows the walking direction; the body pose is :func:`~smplify3d_core.sim.poses.walking` with
      the gait phase advancing 2π per stride (1.25–1.45 m walked);
    * stops (after every walk): the person turns in place (smoothly, ≤ 1.9 rad/s, toward a random
      point of the region) and stands (1.2–3 s), waves (the hand swinging at 1.0–1.4 Hz) or crouches
      (3–4.5 s). The pose blends from walking to standing over 0.4 s, then into the activity over
      1 s (crouching: 1.6 s, the depth ramping), and back.

    Position, velocity, heading and pose are continuous (the acceleration is bounded). The pelvis
    height is smooth too: the mean over the gait cycle of the height that puts the lowest vertex on
    the ground while walking, the exact one at rest (blended like the pose), so feet may float or
    sink by a centimetre or two while walking. Pelvises stay ≥ 0.7 m apart in the ground plane
    (a candidate walk that would come nearer is drawn again; after 40 tries the person waits a
    second where it stands, or takes the clearest walk when that is clearer). Checked: ≥ 0.7 m over
    the first 120 s of seeds 0–7.

Scripted events (for ``persons`` ≥ 3 and about the first 6 s; fewer persons get what fits)
    ``p0`` and ``p1`` walk sideways in the same direction, ``p0`` at 5–5.4 m depth and ``p1``
    1.8–2 times as deep, ``p0`` faster in bearing (by ≈ 0.05–0.08 rad/s), so that in the image
    ``p0`` passes in front of ``p1`` around ``events["crossing"]["time"]`` (2.6–3.0 s) and hides it
    in image and LiDAR: for about 4–5 frames at 10 Hz ``p1`` keeps ≤ 3 keypoints above 0.3 and
    ≈ 5–50 LiDAR points (through the gap between ``p0``'s legs) of its usual ≈ 150 (humanm3 preset,
    seeds 0 and 1). ``p0`` is made ≥ 8 cm taller than ``p1`` (``p1``'s betas are drawn again), as the
    LiDAR looks from above the camera. ``p0`` then leaves the field of view. ``p2`` enters the field
    of view from the side, stops and waves. ``p3`` walks out of the field of view and stays out for
    a while. ``p4`` crouches. More persons wander. :attr:`SequencePlan.events` lists the events.
    The depths are fractions of the preset's ``distance_range`` and the timings are made for the
    humanm3 preset (4–12 m; checked for seeds 0 and 1, still and moving rig). In sloper4d's
    narrower 2.8–6 m the people are crowded: the far walker of the crossing stops at 5.5 m, and
    pelvises came as near as 0.3 m (seed 0).

Moving rig
    With ``moving_robot=True`` the rig drives back and forth at 0.5 m/s along a circular arc
    (curvature 0.25 rad/m: yaw rate 0.125 rad/s), arc length −2…+2 m, reversing with a 3 s cosine
    speed ramp (period 22 s); it passes the arc's middle (the still camera's pose) at the crossing
    time, so the crossing is seen as from the still camera. The people's scripts are the same as
    with a still rig (they are in odom).

Frames of a sequence
    A frame lists a person when its pelvis is ≥ 1 m in front of the camera and at least 4 of its 17
    true COCO keypoints project into the image. Persons hidden by another person stay in the frame
    with their low-confidence keypoints and maybe no LiDAR points (what a tracker would be given);
    persons that are not listed are still in the world (they are rendered and scanned: their
    points are labelled −2, "background", in ``cloud_labels``). Per-frame randomness (LiDAR noise,
    keypoint noise, the image-only init) comes from a Generator seeded from (seed, index), so any
    frame can be simulated alone.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from smplify3d_core.geometry.transforms import transform_points
from smplify3d_core.sim import poses
from smplify3d_core.sim.lidar import BACKGROUND_LABEL, Mesh
from smplify3d_core.sim.presets import SimPreset, get_preset
from smplify3d_core.sim.scene import (PersonPlacement, SimulatedScene, _forward, box_mesh, orientation_facing, pole_mesh,
                                      simulate_scene)

TURN_RADIUS = 1.5  # metres, radius of the arcs of a walking path
SPEED_RAMP = 1.2  # seconds, start/stop of a walk (cosine speed profile)
WALK_BLEND = 0.4  # seconds, walking <-> standing pose blend
ACTIVITY_BLEND = {"stand": 1.0, "wave": 1.0, "crouch": 1.6}  # seconds, standing <-> activity pose blend
MIN_CLEARANCE = 0.7  # metres between pelvises (ground plane) asked of new walks
RIG_SPEED = 0.5  # m/s
RIG_CURVATURE = 0.25  # rad/m
RIG_HALF_ARC = 2.0  # metres
RIG_REVERSE = 3.0  # seconds
IN_FRONT = 1.0  # metres: a person's pelvis must be this far in front of the camera to be simulated
MIN_KEYPOINTS_IN_IMAGE = 4
CHUNK = 20.0  # seconds of script made at a time
ACTIVITIES = ("stand", "wave", "crouch")
POSE_NAME = {"stand": "standing", "wave": "waving", "crouch": "crouching", "walk": "walking"}


def _smoothstep(x):
    """C¹ ramp 0 → 1 on x in [0, 1] (3x² − 2x³), clipped outside."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _wrap(angle: float) -> float:
    """Angle in (−π, π], radians."""
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def _heading_vector(heading: float) -> np.ndarray:
    return np.array([np.cos(heading), np.sin(heading)])


# ---------------------------------------------------------------------------- paths (odom ground plane)
class _Path:
    """A chain of segments in the ground plane, parametrised by arc length s (metres).

    Segments: ``("line", start (2,), heading, length)`` and
    ``("arc", centre (2,), radius, start angle around the centre, sense ±1 (+1 = left turn), sweep ≥ 0)``.
    """

    def __init__(self, segments: List[tuple]) -> None:
        self.segments = segments
        lengths = [seg[3] if seg[0] == "line" else seg[2] * seg[5] for seg in segments]
        self.starts = np.concatenate([[0.0], np.cumsum(lengths)])
        self.length = float(self.starts[-1])

    def at(self, s: float) -> Tuple[np.ndarray, float]:
        """(position (2,) metres, heading rad) at arc length ``s`` (clipped to the path)."""
        s = float(np.clip(s, 0.0, self.length))
        k = min(int(np.searchsorted(self.starts, s, side="right")) - 1, len(self.segments) - 1)
        seg, u = self.segments[k], s - self.starts[k]
        if seg[0] == "line":
            _, start, heading, _ = seg
            return start + u * _heading_vector(heading), heading
        _, centre, radius, angle0, sense, _ = seg
        angle = angle0 + sense * u / radius
        return centre + radius * np.array([np.cos(angle), np.sin(angle)]), angle + sense * np.pi / 2


def _line(start: np.ndarray, heading: float, length: float) -> _Path:
    return _Path([("line", np.asarray(start, dtype=np.float64), float(heading), float(length))])


def _turn_and_go(start: np.ndarray, heading: float, goal: np.ndarray, radius: float,
                 max_sweep: float) -> Optional[_Path]:
    """The path that turns toward ``goal`` on an arc of ``radius`` (metres) and then walks straight
    to it; None when the goal is inside the turning circle or the turn sweeps more than ``max_sweep`` rad."""
    start, goal = np.asarray(start, dtype=np.float64), np.asarray(goal, dtype=np.float64)
    forward = _heading_vector(heading)
    to_goal = goal - start
    sense = 1.0 if forward[0] * to_goal[1] - forward[1] * to_goal[0] >= 0 else -1.0
    centre = start + radius * sense * np.array([-forward[1], forward[0]])
    offset = goal - centre
    distance = float(np.hypot(*offset))
    if distance <= radius * 1.05:
        return None
    # the exit heading psi makes the tangent line from the circle pass through the goal
    psi = float(np.arctan2(offset[1], offset[0])) + sense * float(np.arcsin(radius / distance))
    sweep = (sense * (psi - heading)) % (2 * np.pi)
    if sweep > max_sweep:
        return None
    segments = []
    angle0 = float(np.arctan2(*(start - centre)[::-1]))
    if sweep > 1e-9:
        segments.append(("arc", centre, radius, angle0, sense, sweep))
    exit_point = centre + radius * np.array([np.cos(angle0 + sense * sweep), np.sin(angle0 + sense * sweep)])
    segments.append(("line", exit_point, psi, float(np.hypot(*(goal - exit_point)))))
    return _Path(segments)


# ---------------------------------------------------------------------------- legs of a script
@dataclass
class _Walk:
    """Walking along ``path`` from time ``t0`` (s) at cruise speed ``speed`` (m/s); starts (ends) at
    rest with a cosine ramp when ``ramp_in`` (``ramp_out``); ``walked0``: metres walked before (gait phase)."""

    t0: float
    path: _Path
    speed: float
    ramp_in: bool
    ramp_out: bool
    walked0: float

    def __post_init__(self) -> None:
        ramp_distance = self.speed * SPEED_RAMP / 2.0
        self._in = SPEED_RAMP if self.ramp_in else 0.0
        self._out = SPEED_RAMP if self.ramp_out else 0.0
        cruise = self.path.length - ramp_distance * (self.ramp_in + self.ramp_out)
        if cruise < -1e-9:
            raise ValueError("a walk is too short for its speed ramps")
        self._cruise_time = max(cruise, 0.0) / self.speed
        self.t1 = self.t0 + self._in + self._cruise_time + self._out

    def distance(self, t: float) -> float:
        """Metres along the path at time ``t``."""
        tau = float(np.clip(t - self.t0, 0.0, self.t1 - self.t0))
        v, ramp = self.speed, SPEED_RAMP
        if tau < self._in:
            return v / 2.0 * (tau - ramp / np.pi * np.sin(np.pi * tau / ramp))
        start = v * self._in / 2.0
        if tau < self._in + self._cruise_time:
            return start + v * (tau - self._in)
        tau -= self._in + self._cruise_time
        return start + v * self._cruise_time + v / 2.0 * (tau + ramp / np.pi * np.sin(np.pi * tau / ramp))

    def ground(self, t: float) -> Tuple[np.ndarray, float, float]:
        """(position (2,), heading, metres walked in total) at time ``t``."""
        s = self.distance(t)
        position, heading = self.path.at(s)
        return position, heading, self.walked0 + s

    def end_heading(self) -> float:
        return self.path.at(self.path.length)[1]


@dataclass
class _Stop:
    """Standing at ``position`` from ``t0`` to ``t1`` (s), turning smoothly from ``heading0`` to
    ``heading1`` (rad), doing ``activity`` (one of :data:`ACTIVITIES`) between ``act0`` and
    ``act1`` (seconds after t0, blends included); ``from_walk``: the pose blends in from walking."""

    t0: float
    t1: float
    position: np.ndarray
    heading0: float
    heading1: float
    walked: float
    activity: str = "stand"
    act0: float = WALK_BLEND
    act1: float = 0.0
    from_walk: bool = True

    def ground(self, t: float) -> Tuple[np.ndarray, float, float]:
        u = (t - self.t0) / max(self.t1 - self.t0, 1e-9)
        return self.position, self.heading0 + _wrap(self.heading1 - self.heading0) * float(_smoothstep(u)), self.walked

    def weights(self, t: float) -> Tuple[float, float]:
        """(weight of the walking pose, weight of the activity pose against standing) at ``t``."""
        tau, duration = t - self.t0, self.t1 - self.t0
        walk = float(_smoothstep((tau - (duration - WALK_BLEND)) / WALK_BLEND))
        if self.from_walk:
            walk = max(walk, 1.0 - float(_smoothstep(tau / WALK_BLEND)))
        if self.activity == "stand":
            return walk, 0.0
        blend = ACTIVITY_BLEND[self.activity]
        act = min(_smoothstep((tau - self.act0) / blend), _smoothstep((self.act1 - tau) / blend))
        return walk, float(act)


# ---------------------------------------------------------------------------- people
class _Person:
    """One person's betas, gait and gestures, and script (a list of legs, made on demand)."""

    def __init__(self, pid: str, betas: np.ndarray, rng: np.random.Generator) -> None:
        self.pid = pid
        self.betas = betas
        self.rng = rng
        u = rng.uniform
        self.speed = u(1.0, 1.4)
        self.stride_length = u(1.25, 1.45)
        self.gait = {"stride": u(0.35, 0.5), "arm_swing": u(0.25, 0.45)}
        self.phase0 = u(0.0, 2 * np.pi)
        self.stand = {"arm_drop": u(1.15, 1.3), "elbow": u(0.1, 0.3), "arm_forward": u(0.0, 0.15)}
        self.wave = {"side": "left" if rng.random() < 0.5 else "right", "abduction": u(0.1, 0.45),
                     "elbow": u(1.1, 1.6)}
        self.wave_amplitude, self.wave_hz = u(0.25, 0.4), u(1.0, 1.4)
        self.crouch = {"depth": u(0.7, 1.0), "lean": u(0.25, 0.5), "splay": u(0.15, 0.35)}
        self.legs: List[Union[_Walk, _Stop]] = []
        self.starts: List[float] = []
        # filled by :meth:`measure`
        self.height_walk = self.height_stand = self.height_wave = 0.0
        self.crouch_weights = np.linspace(0.0, 1.0, 11)
        self.height_crouch = np.zeros(11)
        self.stature = 0.0

    # ------------------------------------------------------------------ poses
    def walking_pose(self, walked: float) -> np.ndarray:
        return poses.walking(self.phase0 + 2 * np.pi * walked / self.stride_length, **self.gait)

    def standing_pose(self) -> np.ndarray:
        return poses.standing(**self.stand)

    def activity_pose(self, activity: str, weight: float, tau: float) -> np.ndarray:
        """(69,) pose of a stop: standing blended with the activity by ``weight``; ``tau`` s into the stop."""
        stand = self.standing_pose()
        if activity == "stand" or weight <= 0.0:
            return stand
        if activity == "wave":
            other = poses.waving(wave=self.wave_amplitude * np.sin(2 * np.pi * self.wave_hz * tau), **self.wave)
        else:
            other = poses.crouching(**self.crouch)
        return (1.0 - weight) * stand + weight * other

    def measure(self, body) -> None:
        """Pelvis heights above the ground of the poses (lowest vertex on the ground), metres."""
        crouch = [self.activity_pose("crouch", w, 0.0) for w in self.crouch_weights]
        walks = [poses.walking(phase, **self.gait) for phase in np.linspace(0, 2 * np.pi, 8, endpoint=False)]
        batch = np.stack([self.standing_pose(), poses.waving(wave=0.0, **self.wave)] + crouch + walks)
        count = len(batch)
        orient = np.tile(orientation_facing(0.0), (count, 1))
        vertices, joints = _forward(body, orient, batch, np.tile(self.betas, (count, 1)), np.zeros((count, 3)))
        # camera-frame y points down: the lowest vertex has the largest y
        heights = vertices[:, :, 1].max(axis=1) - joints[:, 0, 1]
        self.height_stand, self.height_wave = float(heights[0]), float(heights[1])
        self.height_crouch = heights[2:2 + len(crouch)]
        self.height_walk = float(heights[2 + len(crouch):].mean())
        self.stature = float(vertices[0, :, 1].max() - vertices[0, :, 1].min())

    # ------------------------------------------------------------------ script
    @property
    def end(self) -> float:
        return self.legs[-1].t1 if self.legs else 0.0

    def add(self, leg) -> None:
        self.legs.append(leg)
        self.starts.append(leg.t0)

    def leg_at(self, t: float):
        k = max(bisect.bisect_right(self.starts, t) - 1, 0)
        return self.legs[k]

    def ground(self, t: float) -> Tuple[np.ndarray, float, float]:
        """(pelvis position (2,) in the odom ground plane, heading rad, metres walked) at ``t`` ≤ end."""
        return self.leg_at(max(t, 0.0)).ground(max(t, 0.0))

    def state(self, t: float) -> Tuple[np.ndarray, float, float, np.ndarray, str]:
        """(pelvis (x, y) in odom, heading, pelvis height, (69,) body pose, pose name) at ``t``."""
        t = max(t, 0.0)
        leg = self.leg_at(t)
        position, heading, walked = leg.ground(t)
        if isinstance(leg, _Walk):
            return position, heading, self.height_walk, self.walking_pose(walked), "walking"
        walk, act = leg.weights(t)
        stop_pose = self.activity_pose(leg.activity, act, t - leg.t0)
        if leg.activity == "crouch":
            stop_height = float(np.interp(act, self.crouch_weights, self.height_crouch))
        else:
            other = self.height_wave if leg.activity == "wave" else self.height_stand
            stop_height = (1.0 - act) * self.height_stand + act * other
        pose = walk * self.walking_pose(walked) + (1.0 - walk) * stop_pose
        height = walk * self.height_walk + (1.0 - walk) * stop_height
        name = "walking" if walk >= 0.5 else POSE_NAME[leg.activity] if act >= 0.5 else "standing"
        return position, heading, height, pose, name


# ---------------------------------------------------------------------------- the rig
class _Rig:
    """The sensor rig's ground pose: still at the odom origin, or driving back and forth along an arc."""

    def __init__(self, moving: bool, camera_height: float, t_middle: float, sense: float) -> None:
        self.moving, self.camera_height, self.t_middle, self.sense = moving, camera_height, t_middle, sense
        self.cruise = 2 * RIG_HALF_ARC / RIG_SPEED
        self.period = 2 * (self.cruise + RIG_REVERSE)

    def arc_length(self, t: float) -> float:
        """Metres along the arc at time ``t`` (0 = the middle, reached at ``t_middle``)."""
        tau = (t - self.t_middle + RIG_HALF_ARC / RIG_SPEED) % self.period
        S, v, ramp, cruise = RIG_HALF_ARC, RIG_SPEED, RIG_REVERSE, self.cruise
        if tau < cruise:
            return -S + v * tau
        tau -= cruise
        if tau < ramp:
            return S + v * ramp / np.pi * np.sin(np.pi * tau / ramp)
        tau -= ramp
        if tau < cruise:
            return S - v * tau
        tau -= cruise
        return -S - v * ramp / np.pi * np.sin(np.pi * tau / ramp)

    def pose(self, t: float) -> Tuple[float, float, float]:
        """(x, y, heading) of the rig in odom, metres and radians."""
        if not self.moving:
            return 0.0, 0.0, 0.0
        s, k = self.arc_length(t), RIG_CURVATURE
        return float(np.sin(k * s) / k), float(self.sense * (1 - np.cos(k * s)) / k), float(self.sense * k * s)

    def T_odom_cam(self, t: float) -> np.ndarray:
        x, y, heading = self.pose(t)
        return camera_pose(x, y, heading, self.camera_height)


def camera_pose(x: float, y: float, heading: float, camera_height: float) -> np.ndarray:
    """(4, 4) T_odom_cam of a camera ``camera_height`` m above odom (x, y) looking horizontally along
    ``heading`` (rad, about odom z): camera x = right, y = down, z = forward."""
    c, s = np.cos(heading), np.sin(heading)
    T = np.eye(4)
    T[:3, 0] = [s, -c, 0.0]
    T[:3, 1] = [0.0, 0.0, -1.0]
    T[:3, 2] = [c, s, 0.0]
    T[:3, 3] = [x, y, camera_height]
    return T


# ---------------------------------------------------------------------------- public API
@dataclass
class SequenceSettings:
    """What a simulated sequence is.

    persons: number of people; frames: frames of :func:`simulate_sequence` (the plan goes on for
    ever); fps: frames per second (frame i is at t = i / fps seconds); preset: a preset name or a
    :class:`SimPreset`; seed: the seed of everything random; moving_robot: the rig drives (else it
    stands at the odom origin); crossings: script the crossing of p0 and p1 (else they wander).
    """

    persons: int = 5
    frames: int = 60
    fps: float = 10.0
    preset: Union[str, SimPreset] = "humanm3"
    seed: int = 0
    moving_robot: bool = False
    crossings: bool = True

    def __post_init__(self) -> None:
        if self.persons < 0 or self.frames < 0 or not self.fps > 0:
            raise ValueError(f"a sequence needs persons >= 0, frames >= 0 and fps > 0, got {self.persons}, "
                             f"{self.frames}, {self.fps}")

    def to_dict(self) -> dict:
        preset = self.preset if isinstance(self.preset, str) else self.preset.name
        return {"persons": int(self.persons), "frames": int(self.frames), "fps": float(self.fps), "preset": preset,
                "seed": int(self.seed), "moving_robot": bool(self.moving_robot), "crossings": bool(self.crossings)}


@dataclass
class SequenceFrame:
    """One frame of a sequence.

    index: frame number; stamp: index / fps, seconds; T_odom_cam: (4, 4) camera pose in odom;
    scene: the simulated frame (``scene.frame.persons[k].tracking_id`` and the keys of
    ``scene.frame.truth`` are the stable person ids, truth in the camera frame;
    ``scene.frame.frame_id`` = ``f"{index:06d}"``; ``scene.frame.sequence`` = the plan's name).
    """

    index: int
    stamp: float
    T_odom_cam: np.ndarray
    scene: SimulatedScene


class SequencePlan:
    """The scripted world of a sequence: people's motions in odom, the rig's pose, static objects.

    person_ids: ["p0", "p1", ...]; betas: id -> (10,) shape coefficients; events: the scripted events
    ({"crossing": {"near", "far", "time"}, "enters": [ids], "leaves": [ids], "waves": [ids],
    "crouches": [ids]}; only those that the number of persons allows); name: the sequence name.
    """

    def __init__(self, settings: SequenceSettings, body) -> None:
        self.settings = settings
        self.body = body
        self.preset = get_preset(settings.preset)
        self.fps = float(settings.fps)
        near, far = self.preset.distance_range
        self.near, self.far = float(near), float(far)
        self.tan_half = float(np.tan(self.preset.horizontal_fov / 2.0))
        rng = np.random.default_rng(np.random.SeedSequence([int(settings.seed), 0x5E9]))
        count = int(settings.persons)
        self.person_ids: List[str] = [f"p{i}" for i in range(count)]
        sigma, clip = self.preset.betas_sigma, self.preset.betas_clip
        self.betas: Dict[str, np.ndarray] = {
            pid: np.clip(rng.normal(0.0, sigma, size=10), -clip, clip) for pid in self.person_ids}
        self.direction = 1.0 if rng.random() < 0.5 else -1.0  # odom y direction of the crossing walkers
        self.crossing_time = float(rng.uniform(2.6, 3.0))
        self._rig = _Rig(bool(settings.moving_robot), self.preset.camera_height, self.crossing_time,
                         1.0 if rng.random() < 0.5 else -1.0)
        self._background_odom = self._place_background(rng)
        roles = self._roles(count, bool(settings.crossings))
        if "near" in roles:
            self._order_crossing_pair(body, rng)
        self._persons: List[_Person] = []
        for i, pid in enumerate(self.person_ids):
            person = _Person(pid, self.betas[pid],
                             np.random.default_rng(np.random.SeedSequence([int(settings.seed), 1, i])))
            person.measure(body)
            self._persons.append(person)
        self.events: dict = {"enters": [], "leaves": [], "waves": [], "crouches": []}
        self._crossing_setup = None
        for person, role in zip(self._persons, roles):
            self._script_start(person, role)
        self.name = (f"sim_{self.preset.name}_seq{int(settings.seed)}" + ("_moving" if settings.moving_robot else ""))
        self._horizon = 0.0
        self._ensure(settings.frames / self.fps)

    # ------------------------------------------------------------------ time and poses
    def stamp(self, index: int) -> float:
        """Time of frame ``index``, seconds (index / fps)."""
        return float(index) / self.fps

    def T_odom_cam(self, t: float) -> np.ndarray:
        """(4, 4) camera pose in odom at time ``t`` (s): p_odom = T p_cam."""
        return self._rig.T_odom_cam(float(t))

    def pelvis_odom(self, pid: str, t: float) -> np.ndarray:
        """(3,) true pelvis joint of person ``pid`` in odom at ``t``, metres."""
        self._ensure(t)
        position, _, height, _, _ = self._person(pid).state(float(t))
        return np.array([position[0], position[1], height])

    def person_state(self, pid: str, t: float) -> dict:
        """Person ``pid`` at ``t`` in odom: {"pelvis" (3,) m, "heading" rad, "body_pose" (69,), "pose_name"}."""
        self._ensure(t)
        position, heading, height, pose, name = self._person(pid).state(float(t))
        return {"pelvis": np.array([position[0], position[1], height]), "heading": heading, "body_pose": pose,
                "pose_name": name}

    def placements(self, t: float) -> Tuple[List[str], List[PersonPlacement]]:
        """(ids, camera-frame placements) of the persons whose pelvis is ≥ 1 m in front of the camera
        at ``t`` (before the keypoints-in-image test of :meth:`simulate_frame`)."""
        ids, placements, _ = self._placements(float(t))
        return ids, placements

    def _placements(self, t: float):
        self._ensure(t)
        T_cam_odom = np.linalg.inv(self.T_odom_cam(t))
        rig_heading = self._rig.pose(t)[2]
        ids, placements, names = [], [], []
        for person in self._persons:
            position, heading, height, pose, name = person.state(t)
            pelvis = T_cam_odom @ np.array([position[0], position[1], height, 1.0])
            if pelvis[2] < IN_FRONT:
                continue
            # yaw 0 faces the camera (heading = rig heading + π); yaw turns right-handed about up
            yaw = _wrap(heading - rig_heading - np.pi)
            placements.append(PersonPlacement(distance=float(pelvis[2]), lateral=float(pelvis[0]), yaw=yaw, pose=pose,
                                              betas=person.betas.copy(), height=float(height)))
            ids.append(person.pid)
            names.append(name)
        return ids, placements, names

    def background(self, t: float) -> List[Mesh]:
        """The static objects in the camera frame at ``t``: (vertices (V, 3) m, faces (F, 3))."""
        T_cam_odom = np.linalg.inv(self.T_odom_cam(t))
        return [(transform_points(T_cam_odom, vertices), faces) for vertices, faces in self._background_odom]

    def frame_seed(self, index: int) -> int:
        """Seed of frame ``index``'s Generator (LiDAR noise, keypoint noise, init), from (seed, index)."""
        return int(np.random.SeedSequence([int(self.settings.seed), 2, int(index)]).generate_state(1)[0])

    def simulate_frame(self, index: int) -> SequenceFrame:
        """Render frame ``index`` (camera image, LiDAR scan, keypoints, init, truth)."""
        t = self.stamp(index)
        ids, placements, names = self._placements(t)
        scene = simulate_scene(self.body, preset=self.preset, seed=self.frame_seed(index), placements=placements,
                               background=self.background(t), tracking_ids=ids)
        scene = _keep_seen(scene, names)
        scene.frame.frame_id = f"{int(index):06d}"
        scene.frame.sequence = self.name
        return SequenceFrame(index=int(index), stamp=t, T_odom_cam=self.T_odom_cam(t), scene=scene)

    def _person(self, pid: str) -> _Person:
        try:
            return self._persons[self.person_ids.index(pid)]
        except ValueError:
            raise KeyError(f"no person {pid!r} in this sequence (persons: {self.person_ids})") from None

    # ------------------------------------------------------------------ world set-up
    def _roles(self, count: int, crossings: bool) -> List[str]:
        if count == 1:
            return ["enter"]
        scripted = (["near", "far"] if crossings else ["wander", "wander"]) + ["enter", "leave", "crouch"]
        return (scripted + ["wander"] * count)[:count]

    def _order_crossing_pair(self, body, rng: np.random.Generator) -> None:
        """Make p0 (the near walker of the crossing) ≥ 8 cm taller than p1, so that it hides p1 whole
        from the LiDAR too (which looks from above the camera): p1's betas are drawn again (up to
        50 times; the shortest draw is kept)."""
        def stature(betas: np.ndarray) -> float:
            vertices, _ = _forward(body, orientation_facing(0.0)[None], poses.standing()[None], betas[None],
                                   np.zeros((1, 3)))
            return float(np.ptp(vertices[0, :, 1]))

        sigma, clip = self.preset.betas_sigma, self.preset.betas_clip
        if stature(self.betas["p1"]) > stature(self.betas["p0"]):
            self.betas["p0"], self.betas["p1"] = self.betas["p1"], self.betas["p0"]
        tallest = stature(self.betas["p0"]) - 0.08
        best, best_stature = self.betas["p1"], stature(self.betas["p1"])
        for _ in range(50):
            if best_stature <= tallest:
                break
            betas = np.clip(rng.normal(0.0, sigma, size=10), -clip, clip)
            height = stature(betas)
            if height < best_stature:
                best, best_stature = betas, height
        self.betas["p1"] = best

    def _place_background(self, rng: np.random.Generator) -> List[Mesh]:
        """Boxes, poles and a wall behind the people's region (odom meshes), so they never hide anyone."""
        meshes: List[Mesh] = []
        ground_y = self.preset.camera_height  # built in the still camera's frame, then moved to odom
        T_odom_cam0 = camera_pose(0.0, 0.0, 0.0, self.preset.camera_height)
        wall_made = False
        for _ in range(self.preset.background_objects):
            kind = rng.choice(["box", "pole", "wall"], p=[0.45, 0.4, 0.15])
            if kind == "wall" and wall_made:
                kind = "box"
            size = np.array([rng.uniform(0.4, 1.6), rng.uniform(0.4, 1.4), rng.uniform(0.4, 1.6)])
            radius, height = rng.uniform(0.05, 0.15), rng.uniform(2.0, 4.0)
            yaw, u, v = rng.uniform(-np.pi, np.pi), rng.random(), rng.random()
            if kind == "wall":
                depth = self.far + 6.0 + 4.0 * u
                vertices, faces = box_mesh((depth * self.tan_half * (v - 0.5), depth),
                                           (rng.uniform(6.0, 12.0), rng.uniform(2.0, 3.5), 0.25), 0.0, ground_y)
                wall_made = True
            else:
                depth = self.far + 1.5 + 4.5 * u
                center = (depth * self.tan_half * (2.0 * v - 1.0) * 0.95, depth)
                vertices, faces = (box_mesh(center, size, yaw, ground_y) if kind == "box"
                                   else pole_mesh(center, radius, height, ground_y))
            meshes.append((transform_points(T_odom_cam0, vertices), faces))
        return meshes

    def _region_point(self, rng: np.random.Generator) -> np.ndarray:
        """A random point (x, y) of the region where people walk: in view of the still camera."""
        x = rng.uniform(self.near + 0.5, self.far - 0.5)
        return np.array([x, (x * self.tan_half * 0.75 - 0.3) * rng.uniform(-1.0, 1.0)])

    def _script_start(self, person: _Person, role: str) -> None:
        """The first legs of a person's script (its scripted event), checked against earlier persons."""
        best, best_clearance = None, -np.inf
        for _ in range(40):
            legs = self._role_legs(person, role)
            clearance = self._clearance(person, legs)
            if clearance > best_clearance:
                best, best_clearance = legs, clearance
            if clearance >= MIN_CLEARANCE:
                break
        for leg in best:
            person.add(leg)
        pid = person.pid
        if role == "near":
            self.events["crossing"] = {"near": pid, "far": None, "time": self.crossing_time}
            self.events["leaves"].append(pid)
        elif role == "far":
            self.events.setdefault("crossing", {"near": None, "time": self.crossing_time})["far"] = pid
        elif role == "enter":
            self.events["enters"].append(pid)
            self.events["waves"].append(pid)
        elif role == "leave":
            self.events["leaves"].append(pid)
        elif role == "crouch":
            self.events["crouches"].append(pid)

    def _role_legs(self, person: _Person, role: str) -> list:
        rng, u, d = person.rng, person.rng.uniform, self.direction
        near, far, k, tc = self.near, self.far, self.tan_half, self.crossing_time
        span = far - near  # depths below: fractions of the preset's distance range (humanm3: 4-12 m)
        side = d * np.pi / 2  # heading of a walk toward +d·y
        if role == "near":
            person.speed = u(1.0, 1.1)
            depth = near + span * u(0.125, 0.175)
            self._crossing_setup = (depth, person.speed, u(0.18, 0.26))
            y_cross = d * depth * np.tan(self._crossing_setup[2])
            start = np.array([depth, y_cross - d * person.speed * tc])
            end_y = d * (depth * k + 1.5)
            walk = _Walk(0.0, _line(start, side, abs(end_y - start[1])), person.speed, False, True, 0.0)
            return [walk] + self._stop_after(walk, rng, "stand", u(2.0, 4.0))
        if role == "far":
            # about twice as deep as p0 (so that p0 covers it whole) and slower in bearing, so that
            # p0 passes it in the image at 0.05–0.08 rad/s: hidden for ≈ 0.3–0.8 s
            near_depth, near_speed, bearing = self._crossing_setup
            person.speed = u(1.3, 1.4)
            depth = float(min(near_depth * u(1.8, 2.0), far - 0.5))
            start = np.array([depth, d * depth * np.tan(bearing) - d * person.speed * tc])
            walk = _Walk(0.0, _line(start, side, person.speed * (tc + u(2.5, 3.5))), person.speed, False, True, 0.0)
            return [walk] + self._stop_after(walk, rng, "stand", u(1.5, 3.0))
        if role == "enter":
            depth = near + span * u(0.31, 0.44)
            start = np.array([depth, d * (depth * k + u(1.2, 2.0))])
            stop_y = d * depth * np.tan(u(0.25, 0.4))
            walk = _Walk(0.0, _line(start, -side, abs(start[1] - stop_y)), person.speed, False, True, 0.0)
            return [walk] + self._stop_after(walk, rng, "wave", u(2.5, 3.5))
        if role == "leave":
            person.speed = u(1.15, 1.3)
            depth = near + span * u(0.25, 0.375)
            start = np.array([depth, -d * depth * np.tan(u(0.08, 0.2))])
            end_y = -d * (depth * k + 1.5)
            walk = _Walk(0.0, _line(start, -side, abs(end_y - start[1])), person.speed, False, True, 0.0)
            return [walk] + self._stop_after(walk, rng, "stand", u(3.0, 6.0))
        if role == "crouch":
            depth = near + span * u(0.75, 0.94)
            position = np.array([depth, -d * depth * np.tan(u(0.15, 0.4))])
            heading = u(-np.pi, np.pi)
            act0 = u(0.8, 1.6)
            act1 = act0 + u(3.4, 4.0)
            return [_Stop(0.0, act1 + WALK_BLEND, position, heading, heading, 0.0, "crouch", act0, act1, False)]
        # wander: starts standing somewhere in the region
        heading = u(-np.pi, np.pi)
        return [_Stop(0.0, u(0.3, 2.0), self._region_point(rng), heading, heading, 0.0, "stand", WALK_BLEND, 0.0, False)]

    def _stop_after(self, walk: _Walk, rng: np.random.Generator, activity: str, duration: float) -> List[_Stop]:
        """A stop at the end of ``walk``, turning to face a point of the region (≤ 1.9 rad/s)."""
        position, heading, walked = walk.ground(walk.t1)
        target = self._region_point(rng) - position
        heading1 = heading + _wrap(float(np.arctan2(target[1], target[0])) - heading)
        duration = max(duration, 2 * ACTIVITY_BLEND[activity] + 2 * WALK_BLEND + 0.5, 1.5 * abs(heading1 - heading) / 1.9)
        return [_Stop(walk.t1, walk.t1 + duration, position, heading, heading1, walked, activity,
                      WALK_BLEND, duration - WALK_BLEND, True)]

    # ------------------------------------------------------------------ wandering on
    def _ensure(self, t: float) -> None:
        """Make every script reach past ``t`` (+ a margin), chunk by chunk in a fixed order, so the
        plan does not depend on which times were asked for first."""
        while self._horizon < float(t) + 1.0:
            self._horizon += CHUNK
            for person in self._persons:
                while person.end < self._horizon:
                    for leg in self._next_legs(person):
                        person.add(leg)

    def _next_legs(self, person: _Person) -> list:
        rng = person.rng
        last = person.legs[-1]
        moving = isinstance(last, _Walk) and not last.ramp_out
        position, heading, walked = last.ground(last.t1)
        heading = last.end_heading() if isinstance(last, _Walk) else last.heading1
        best, best_clearance = None, -np.inf
        for _ in range(40):
            goal = self._region_point(rng)
            activity = str(rng.choice(ACTIVITIES, p=[0.5, 0.25, 0.25]))
            duration = rng.uniform(1.2, 3.0) if activity == "stand" else rng.uniform(3.0, 4.5)
            if np.hypot(*(goal - position)) < 3.0:
                continue
            path = _turn_and_go(position, heading, goal, TURN_RADIUS, 3.5)
            if path is None or path.length < person.speed * SPEED_RAMP + 0.1:
                continue
            walk = _Walk(last.t1, path, person.speed, not moving, True, walked)
            legs = [walk] + self._stop_after(walk, rng, activity, duration)
            clearance = self._clearance(person, legs)
            if clearance > best_clearance:
                best, best_clearance = legs, clearance
            if clearance >= MIN_CLEARANCE:
                break
        # every leg ends in the walking pose (a stop blends into it at its end): blend from it again
        wait = [_Stop(last.t1, last.t1 + 1.0, position, heading, heading, walked, "stand", WALK_BLEND, 0.0, True)]
        if best is None or (best_clearance < MIN_CLEARANCE and not moving
                            and self._clearance(person, wait) > best_clearance):
            if moving:
                raise RuntimeError(f"{person.pid}: no path on from {position}")
            return wait  # stand a second longer (no goal reachable, or all too near someone), then try again
        return best

    def _clearance(self, person: _Person, legs: list) -> float:
        """Smallest ground-plane distance (m) between ``legs`` of ``person`` and the other persons,
        sampled every 0.1 s. Past the end of its script so far a person counts as standing where the
        script ends (its next leg starts there): the others, and this one after ``legs`` until the
        end of the others' scripts (so that nobody has planned to walk through where it stops)."""
        smallest = np.inf
        others_end = max((other.end for other in self._persons if other is not person), default=0.0)
        for k, leg in enumerate(legs):
            until = max(leg.t1, others_end) if k == len(legs) - 1 else leg.t1
            times = np.arange(leg.t0, until + 1e-9, 0.1)
            mine = np.array([leg.ground(min(t, leg.t1))[0] for t in times])
            for other in self._persons:
                if other is person or not other.legs:
                    continue
                theirs = np.array([other.ground(min(t, other.end))[0] for t in times])
                smallest = min(smallest, float(np.min(np.linalg.norm(mine - theirs, axis=1))))
        return smallest


def _keep_seen(scene: SimulatedScene, names: Sequence[str]) -> SimulatedScene:
    """Keep the persons with ≥ 4 true keypoints in the image; the others' points become background."""
    count = len(scene.frame.persons)
    keep = [i for i in range(count) if int(scene.in_image[i].sum()) >= MIN_KEYPOINTS_IN_IMAGE]
    labels = scene.cloud_labels.copy()
    for i in range(count):
        labels[scene.cloud_labels == i] = keep.index(i) if i in keep else BACKGROUND_LABEL
    frame = scene.frame
    persons = [frame.persons[i] for i in keep]
    frame.persons = persons
    frame.truth = {p.tracking_id: scene.frame.truth[p.tracking_id] for p in persons}
    return SimulatedScene(
        frame=frame, cloud_labels=labels, preset=scene.preset, seed=scene.seed,
        placements=[scene.placements[i] for i in keep], pose_names=[names[i] for i in keep],
        occluded=scene.occluded[keep], self_occluded=scene.self_occluded[keep], in_image=scene.in_image[keep],
        background_meshes=scene.background_meshes)


def simulate_sequence(body, settings: SequenceSettings, progress: bool = False) -> List[SequenceFrame]:
    """The first ``settings.frames`` frames of the sequence (a tqdm bar on stderr when ``progress``)."""
    from tqdm import tqdm

    plan = SequencePlan(settings, body)
    return [plan.simulate_frame(i)
            for i in tqdm(range(int(settings.frames)), desc="simulating", unit="frame", disable=not progress)]


def hidden_persons(scene: SimulatedScene, max_keypoints: int = 3, max_points: int = 20) -> List[str]:
    """Ids of the persons of a frame that others hide: at most ``max_keypoints`` keypoints with a
    confidence ≥ 0.3 (the occluded ones are below) and at most ``max_points`` LiDAR points."""
    out = []
    for k, person in enumerate(scene.frame.persons):
        confident = int((person.keypoints[:, 2] >= 0.3).sum())
        if confident <= max_keypoints and len(person.points) <= max_points and scene.occluded[k].any():
            out.append(person.tracking_id)
    return out


__all__ = ["SequenceSettings", "SequencePlan", "SequenceFrame", "simulate_sequence", "hidden_persons", "camera_pose"]
