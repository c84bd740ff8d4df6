"""A small library of named SMPL body poses, random variations of them, and a pose corpus.

A body pose is the (69,) axis-angle vector of SMPL joints 1..23 (joint ``i`` at
``body_pose[3(i−1):3i]``), radians. SMPL's joint frames are aligned with the model frame at rest
(T-pose): x toward the person's left, y up, z forward (the way the body faces). Conventions
checked by posing the model:

* shoulder (16 left / 17 right) about z: −/+ lowers the arm; about y: −/+ swings it forward;
* elbow (18 / 19) about y: −/+ bends the forearm forward (the SMPL angle prior's natural sign);
* hip (1 / 2) about x: negative flexes the thigh forward; knee (4 / 5) about x: positive bends;
* spine (3, 6, 9) about x: positive leans forward; about y: twists.

Poses are written for the left side and mirrored for the right: mirroring a rotation through the
body's sagittal plane maps axis-angle (x, y, z) to (x, −y, −z).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import numpy as np
from scipy.spatial.transform import Rotation

# SMPL joint ids
PELVIS, L_HIP, R_HIP, SPINE1, L_KNEE, R_KNEE, SPINE2, L_ANKLE, R_ANKLE, SPINE3 = range(10)
L_FOOT, R_FOOT, NECK, L_COLLAR, R_COLLAR, HEAD, L_SHOULDER, R_SHOULDER = range(10, 18)
L_ELBOW, R_ELBOW, L_WRIST, R_WRIST, L_HAND, R_HAND = range(18, 24)

_LEFT_TO_RIGHT = {
    L_HIP: R_HIP, L_KNEE: R_KNEE, L_ANKLE: R_ANKLE, L_FOOT: R_FOOT, L_COLLAR: R_COLLAR,
    L_SHOULDER: R_SHOULDER, L_ELBOW: R_ELBOW, L_WRIST: R_WRIST, L_HAND: R_HAND,
}
_MIRROR_JOINT = {**_LEFT_TO_RIGHT, **{right: left for left, right in _LEFT_TO_RIGHT.items()}}

POSE_NAMES = (
    "standing", "walking", "arms_raised", "crouching", "waving", "pointing", "hands_on_hips", "t_pose",
)


# ---------------------------------------------------------------------------- helpers
def _aa(*rotations) -> np.ndarray:
    """Axis-angle (3,) of the product of rotations given as (axis letter, angle) pairs, applied
    left to right as matrices (the first one is outermost)."""
    matrix = np.eye(3)
    for axis, angle in rotations:
        matrix = matrix @ Rotation.from_euler(axis, angle).as_matrix()
    return Rotation.from_matrix(matrix).as_rotvec()


def mirror_axis_angle(axis_angle: np.ndarray) -> np.ndarray:
    """Mirror an axis-angle rotation through the sagittal (y–z) plane: (x, y, z) → (x, −y, −z)."""
    axis_angle = np.asarray(axis_angle, dtype=np.float64)
    return axis_angle * np.array([1.0, -1.0, -1.0])


def mirror_pose(body_pose: np.ndarray) -> np.ndarray:
    """The (69,) body pose of the mirror-image person (left and right swapped)."""
    joints = np.asarray(body_pose, dtype=np.float64).reshape(23, 3)
    out = np.zeros_like(joints)
    for joint in range(1, 24):
        out[_MIRROR_JOINT.get(joint, joint) - 1] = mirror_axis_angle(joints[joint - 1])
    return out.reshape(69)


class _Pose:
    """Mutable 23×3 joint table with left/right helpers."""

    def __init__(self) -> None:
        self.joints = np.zeros((24, 3))

    def set(self, joint: int, axis_angle) -> "_Pose":
        self.joints[joint] = np.asarray(axis_angle, dtype=np.float64)
        return self

    def sym(self, left_joint: int, axis_angle) -> "_Pose":
        """Set the left joint and its mirror image on the right."""
        self.joints[left_joint] = np.asarray(axis_angle, dtype=np.float64)
        self.joints[_LEFT_TO_RIGHT[left_joint]] = mirror_axis_angle(axis_angle)
        return self

    def right(self, left_joint: int, axis_angle_as_if_left) -> "_Pose":
        """Set only the right joint, from a rotation written for the left side."""
        self.joints[_LEFT_TO_RIGHT[left_joint]] = mirror_axis_angle(axis_angle_as_if_left)
        return self

    def vector(self) -> np.ndarray:
        return self.joints[1:].reshape(69).copy()


def _arm_down(pose: _Pose, left_joint_side: str, drop: float, elbow: float, forward: float = 0.0) -> None:
    """Left-side arm hanging ``drop`` rad below the T-pose, swung ``forward`` rad forward, elbow bent."""
    rotation = _aa(("x", -forward), ("z", -drop))
    elbow_rotation = np.array([0.0, -elbow, 0.0])
    if left_joint_side == "left":
        pose.set(L_SHOULDER, rotation).set(L_ELBOW, elbow_rotation)
    else:
        pose.right(L_SHOULDER, rotation).right(L_ELBOW, elbow_rotation)


# ---------------------------------------------------------------------------- named poses
def t_pose() -> np.ndarray:
    """The rest pose: arms straight out sideways."""
    return np.zeros(69)


def standing(arm_drop: float = 1.22, elbow: float = 0.15, arm_forward: float = 0.05) -> np.ndarray:
    """Relaxed standing: arms ``arm_drop`` rad (≈70°) below the T-pose, elbows slightly bent."""
    pose = _Pose()
    _arm_down(pose, "left", arm_drop, elbow, arm_forward)
    _arm_down(pose, "right", arm_drop, elbow, arm_forward)
    pose.sym(L_COLLAR, [0.0, 0.0, -0.05])
    return pose.vector()


def walking(phase: float = 0.0, stride: float = 0.45, arm_swing: float = 0.35) -> np.ndarray:
    """Walking at gait phase ``phase`` (rad): legs swing by ±``stride`` rad, arms swing opposite,
    the knee of the swinging leg bends; phase 0 has the legs together, π/2 the left leg forward."""
    s = np.sin(phase)
    pose = _Pose()
    # hips: negative x flexes forward
    pose.set(L_HIP, [-stride * s, 0.0, 0.0])
    pose.right(L_HIP, [stride * s, 0.0, 0.0])
    # knees: the leg moving forward (swing phase) bends most, the stance leg stays nearly straight
    left_knee = 0.12 + 0.55 * max(0.0, np.cos(phase - 0.3))
    right_knee = 0.12 + 0.55 * max(0.0, np.cos(phase + np.pi - 0.3))
    pose.set(L_KNEE, [left_knee, 0.0, 0.0])
    pose.right(L_KNEE, [right_knee, 0.0, 0.0])
    pose.set(L_ANKLE, [0.15 * s - 0.05, 0.0, 0.0])
    pose.right(L_ANKLE, [-0.15 * s - 0.05, 0.0, 0.0])
    # arms swing opposite to the legs: left arm forward when the right leg is forward (s < 0)
    _arm_down(pose, "left", 1.25, 0.3 + 0.2 * max(0.0, -s), forward=-arm_swing * s)
    _arm_down(pose, "right", 1.25, 0.3 + 0.2 * max(0.0, s), forward=arm_swing * s)
    # slight forward lean and counter-rotation of the trunk
    pose.set(SPINE1, [0.05, 0.08 * s, 0.0])
    pose.set(SPINE3, [0.02, -0.08 * s, 0.0])
    return pose.vector()


def arms_raised(raise_angle: float = 1.1, elbow: float = 0.2, spread: float = 0.0) -> np.ndarray:
    """Both arms raised ``raise_angle`` rad above the T-pose (≈63°), elbows slightly bent."""
    pose = _Pose()
    pose.sym(L_SHOULDER, _aa(("y", -spread), ("z", raise_angle)))
    pose.sym(L_ELBOW, [0.0, -elbow, 0.0])
    pose.sym(L_COLLAR, [0.0, 0.0, 0.15])
    return pose.vector()


def crouching(depth: float = 1.0, lean: float = 0.35, splay: float = 0.25) -> np.ndarray:
    """Crouching/squatting; ``depth`` in [0, 1] scales hip flexion (up to ≈1.7 rad) and knee bend
    (up to ≈2.1 rad); the ankles keep the feet flat; the trunk leans forward, arms rest forward."""
    hip = 1.7 * depth
    knee = 2.1 * depth
    pose = _Pose()
    pose.sym(L_HIP, _aa(("y", splay), ("x", -hip)))
    pose.sym(L_KNEE, [knee, 0.0, 0.0])
    pose.sym(L_ANKLE, [-(knee - hip), 0.0, 0.0])
    pose.set(SPINE1, [lean * 0.5, 0.0, 0.0])
    pose.set(SPINE2, [lean * 0.3, 0.0, 0.0])
    pose.set(SPINE3, [lean * 0.2, 0.0, 0.0])
    pose.set(NECK, [-lean * 0.5, 0.0, 0.0])
    _arm_down(pose, "left", 1.2, 0.9, forward=0.7)
    _arm_down(pose, "right", 1.2, 0.9, forward=0.7)
    return pose.vector()


def waving(side: str = "right", wave: float = 0.0, abduction: float = 0.25, elbow: float = 1.4) -> np.ndarray:
    """One arm up and out, forearm pointing up (elbow bent ``elbow`` rad), the hand swinging by
    ``wave`` rad; the other arm hangs relaxed."""
    pose = _Pose()
    # rotate the upper arm about its own axis so that elbow flexion lifts the forearm up,
    # then raise the arm ``abduction`` rad above horizontal
    shoulder = _aa(("z", abduction), ("x", -np.pi / 2))
    elbow_rotation = np.array([0.0, -elbow, 0.0])
    hand_wave = np.array([0.0, 0.0, wave])
    if side == "left":
        pose.set(L_SHOULDER, shoulder).set(L_ELBOW, elbow_rotation).set(L_WRIST, hand_wave)
        _arm_down(pose, "right", 1.25, 0.15)
    else:
        pose.right(L_SHOULDER, shoulder).right(L_ELBOW, elbow_rotation).right(L_WRIST, hand_wave)
        _arm_down(pose, "left", 1.25, 0.15)
    pose.set(HEAD, [0.0, 0.1 if side == "left" else -0.1, 0.0])
    return pose.vector()


def pointing(side: str = "right", elevation: float = 0.1, azimuth: float = 0.0) -> np.ndarray:
    """One arm straight out forward (``elevation`` rad above horizontal, turned ``azimuth`` rad
    toward the pointing side), the head turned toward it; the other arm relaxed."""
    pose = _Pose()
    # forward (−y rotation for the left arm) then lift toward up
    arm = _aa(("y", -(np.pi / 2 - azimuth)), ("z", elevation))
    if side == "left":
        pose.set(L_SHOULDER, arm).set(L_ELBOW, [0.0, -0.05, 0.0])
        _arm_down(pose, "right", 1.25, 0.2)
        pose.set(HEAD, [0.0, 0.25 * np.sign(azimuth) if azimuth else 0.0, 0.0])
    else:
        pose.right(L_SHOULDER, arm).right(L_ELBOW, [0.0, -0.05, 0.0])
        _arm_down(pose, "left", 1.25, 0.2)
        pose.set(HEAD, [0.0, -0.25 * np.sign(azimuth) if azimuth else 0.0, 0.0])
    pose.set(SPINE3, [0.0, 0.1 if side == "left" else -0.1, 0.0])
    return pose.vector()


def hands_on_hips(arm_drop: float = 0.75, elbow: float = 1.7) -> np.ndarray:
    """Hands on the hips: arms down and out, upper arm turned about its axis so that the elbow
    flexion brings the hands in to the waist."""
    pose = _Pose()
    pose.sym(L_SHOULDER, _aa(("z", -arm_drop), ("x", np.pi / 2)))
    pose.sym(L_ELBOW, [0.0, -elbow, 0.0])
    return pose.vector()


NAMED_POSES: Dict[str, Callable[..., np.ndarray]] = {
    "standing": standing,
    "walking": walking,
    "arms_raised": arms_raised,
    "crouching": crouching,
    "waving": waving,
    "pointing": pointing,
    "hands_on_hips": hands_on_hips,
    "t_pose": t_pose,
}

# how often sample_pose picks each pose: people in street scenes mostly stand and walk
POSE_WEIGHTS = {
    "standing": 0.25, "walking": 0.3, "arms_raised": 0.07, "crouching": 0.07, "waving": 0.1,
    "pointing": 0.08, "hands_on_hips": 0.08, "t_pose": 0.05,
}


def named_pose(name: str, **kwargs) -> np.ndarray:
    """The (69,) body pose called ``name`` with its default (or given) parameters."""
    try:
        function = NAMED_POSES[name]
    except KeyError:
        raise ValueError(f"unknown pose {name!r}; known poses: {', '.join(POSE_NAMES)}") from None
    return function(**kwargs)


def _random_parameters(name: str, rng: np.random.Generator) -> dict:
    u = rng.uniform
    side = "left" if rng.random() < 0.5 else "right"
    if name == "standing":
        return {"arm_drop": u(1.0, 1.4), "elbow": u(0.05, 0.5), "arm_forward": u(-0.1, 0.3)}
    if name == "walking":
        return {"phase": u(0.0, 2 * np.pi), "stride": u(0.3, 0.55), "arm_swing": u(0.2, 0.5)}
    if name == "arms_raised":
        return {"raise_angle": u(0.7, 1.35), "elbow": u(0.0, 0.6), "spread": u(-0.3, 0.4)}
    if name == "crouching":
        return {"depth": u(0.6, 1.0), "lean": u(0.2, 0.6), "splay": u(0.1, 0.45)}
    if name == "waving":
        return {"side": side, "wave": u(-0.4, 0.4), "abduction": u(0.0, 0.5), "elbow": u(1.0, 1.8)}
    if name == "pointing":
        return {"side": side, "elevation": u(-0.2, 0.4), "azimuth": u(-0.3, 0.5)}
    if name == "hands_on_hips":
        return {"arm_drop": u(0.6, 0.95), "elbow": u(1.5, 1.9)}
    return {}


# per-joint std of the natural jitter added to sampled poses (radians), by SMPL joint id
_JITTER = np.full(24, 0.04)
_JITTER[[L_HAND, R_HAND, L_FOOT, R_FOOT]] = 0.02
_JITTER[[NECK, HEAD]] = 0.08
_JITTER[[SPINE1, SPINE2, SPINE3]] = 0.04
_JITTER[[L_WRIST, R_WRIST]] = 0.1


def sample_pose(
    rng: np.random.Generator,
    names: Optional[Tuple[str, ...]] = None,
    jitter: float = 1.0,
    uniform: bool = False,
) -> Tuple[str, np.ndarray]:
    """A random named pose with random parameters and small per-joint jitter.

    rng: numpy Generator (the only source of randomness).
    names: restrict the choice to these pose names (default: all, with :data:`POSE_WEIGHTS`).
    jitter: scale of the per-joint Gaussian jitter (0 gives the clean parametric pose).
    uniform: pick the names with equal probability instead of :data:`POSE_WEIGHTS`.
    Returns ``(name, body_pose (69,))``.
    """
    names = tuple(names) if names else POSE_NAMES
    weights = np.array([1.0 if uniform else POSE_WEIGHTS.get(n, 0.1) for n in names], dtype=np.float64)
    name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    pose = named_pose(name, **_random_parameters(name, rng))
    noise = rng.normal(size=(24, 3)) * _JITTER[:, None] * jitter
    pose = pose + noise[1:].reshape(69)
    return name, pose


def pose_corpus(count: int, seed: int = 0) -> np.ndarray:
    """(count, 69) varied body poses for fitting a pose prior (e.g. an 8-component GMM).

    Draws :func:`sample_pose` (half of the draws with all names equally likely, half with the
    scene weights) with a larger jitter, mirrors
    half of them (so the corpus is left/right symmetric) and blends a quarter with the relaxed
    standing pose to fill the space between the named poses. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    poses = np.empty((count, 69))
    for i in range(count):
        _, pose = sample_pose(rng, jitter=1.5, uniform=bool(rng.random() < 0.5))
        if rng.random() < 0.5:
            pose = mirror_pose(pose)
        if rng.random() < 0.25:
            mix = rng.uniform(0.2, 0.8)
            pose = mix * pose + (1.0 - mix) * standing(arm_drop=rng.uniform(1.0, 1.4), elbow=rng.uniform(0.05, 0.5))
        poses[i] = pose
    return poses
