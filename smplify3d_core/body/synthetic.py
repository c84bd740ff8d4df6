"""A synthetic, human-like body model written in the official SMPL pickle layout.

SMPL model files are licensed and cannot be shipped, so tests and demos use this
generated stand-in. It has SMPL's topology *sizes* and conventions, not SMPL's mesh:

* 6890 vertices, 13720 triangles (SMPL: 13776), 24 joints with SMPL's kinematic tree.
* SMPL's coordinate convention: metres, y up, the body faces +z, the person's left is +x.
  Rest pose is a T-pose; the neutral adult is about 1.70 m tall (feet at y ~ -1.19,
  top of the head at y ~ 0.50); male ~1.76 m, female ~1.64 m.
* The surface is a union of 15 closed, outward-oriented, genus-0 tubes (one per body part,
  see :data:`PART_NAMES`) that overlap at the joints. Each tube is a stack of elliptical
  rings with tapered radii closed by one pole vertex at each end (F = 2V - 4 per part).
* ``J_regressor`` regresses each joint from rings of vertices around it (non-negative rows
  summing to one), exact to well under a millimetre on the template.
* ``weights`` bind each vertex to the joint that drives its part, blended with the parent
  joint within a few centimetres of the joint only.
* ``shapedirs`` holds 10 hand-made shape directions (:data:`SHAPE_DIRECTION_MEANINGS`),
  each scaled so that beta = +-1 is a plausible one-standard-deviation change.
* ``posedirs`` is all zeros (no pose-corrective blend shapes).
* The vertex ids smplx uses for its extra joints (nose, eyes, ears, toes, heels) sit at
  the right anatomy (:data:`LANDMARK_VERTEX_IDS`).

Public API: :func:`build_synthetic_body`, :func:`write_synthetic_body_model`,
:func:`vertex_part_labels` and the module constants.
"""
from __future__ import annotations

import functools
import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse
from scipy.interpolate import PchipInterpolator
from scipy.optimize import nnls

__all__ = [
    "build_synthetic_body",
    "write_synthetic_body_model",
    "vertex_part_labels",
    "SHAPE_DIRECTION_MEANINGS",
    "LANDMARK_VERTEX_IDS",
    "PART_NAMES",
    "PART_JOINTS",
    "NEUTRAL_JOINTS",
    "JOINT_NAMES",
    "PARENTS",
    "NUM_VERTICES",
    "NUM_FACES",
]

NUM_VERTICES = 6890
NUM_JOINTS = 24
JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

#: (24, 3) designed rest-pose joints of the neutral model in metres (close to SMPL neutral).
NEUTRAL_JOINTS = np.array(
    [
        [0.00, -0.24, 0.03], [0.06, -0.33, 0.01], [-0.06, -0.33, 0.01], [0.00, -0.11, 0.00],
        [0.10, -0.70, 0.02], [-0.10, -0.71, 0.02], [0.01, 0.02, 0.03], [0.09, -1.12, -0.03],
        [-0.09, -1.13, -0.03], [0.00, 0.08, 0.03], [0.12, -1.18, 0.09], [-0.11, -1.18, 0.09],
        [-0.01, 0.29, -0.01], [0.07, 0.19, -0.01], [-0.08, 0.19, -0.01], [0.01, 0.35, 0.04],
        [0.17, 0.22, -0.02], [-0.17, 0.23, -0.01], [0.43, 0.21, -0.03], [-0.43, 0.21, -0.04],
        [0.69, 0.22, -0.03], [-0.69, 0.22, -0.03], [0.78, 0.22, -0.04], [-0.78, 0.22, -0.04],
    ],
    dtype=np.float64,
)
NEUTRAL_JOINTS.setflags(write=False)

#: Meaning of each shape direction (``shapedirs[:, :, k]``); beta = +1 is about +1 std.
SHAPE_DIRECTION_MEANINGS: tuple[str, ...] = (
    "stature: scale about hip height (y = -0.30 m), +6 cm body height per unit",
    "girth/weight: radial inflation of the torso (+8-10%), neck and limbs (+5%)",
    "leg length: thighs and shins 5% longer per unit (feet ~4 cm lower)",
    "arm length: upper arms, forearms and hands 5% longer per unit (wrists ~2.6 cm further out)",
    "shoulder width: shoulders and arms 1.2 cm further out on each side per unit",
    "hip width: pelvis 1 cm wider on each side, legs 0.8 cm further apart per unit",
    "torso length: chest, neck, head and arms 3 cm higher above the pelvis per unit",
    "head size: head 7% larger about the head joint per unit",
    "belly/chest depth: belly 2 cm and chest 1 cm further forward per unit",
    "limb thickness: arm and leg radii 12% larger per unit",
)

# Part layout in the generated (pre-permutation) vertex order:
# (name, vertices per ring, rings, driving joint). Each part has rings*n + 2 vertices.
_LAYOUT = (
    ("torso", 56, 34, 9),
    ("neck", 20, 9, 12),
    ("head", 40, 28, 15),
    ("left_upper_arm", 24, 13, 16),
    ("right_upper_arm", 24, 13, 17),
    ("left_forearm", 20, 13, 18),
    ("right_forearm", 20, 13, 19),
    ("left_hand", 16, 13, 20),
    ("right_hand", 16, 13, 21),
    ("left_thigh", 28, 16, 1),
    ("right_thigh", 28, 16, 2),
    ("left_shin", 24, 15, 4),
    ("right_shin", 24, 15, 5),
    ("left_foot", 20, 12, 7),
    ("right_foot", 20, 12, 8),
)
PART_NAMES: tuple[str, ...] = tuple(p[0] for p in _LAYOUT)
#: The SMPL joint that drives each part (the torso is split among 0/3/6/9/13/14 by height).
PART_JOINTS: dict[str, int] = {p[0]: p[3] for p in _LAYOUT}
_PART_SIZES = tuple(n * r + 2 for _, n, r, _ in _LAYOUT)
_PART_OFFSETS = tuple(int(x) for x in np.concatenate([[0], np.cumsum(_PART_SIZES)[:-1]]))
assert sum(_PART_SIZES) == NUM_VERTICES
NUM_FACES = sum(2 * n * r for _, n, r, _ in _LAYOUT)  # 13720

# Landmark vertex ids required by smplx (VERTEX_IDS['smplh']) plus a few of our own.
_SMPLX_LANDMARKS = {
    "nose": 332, "reye": 6260, "leye": 2800, "rear": 4071, "lear": 583,
    "LBigToe": 3216, "LSmallToe": 3226, "LHeel": 3387,
    "RBigToe": 6617, "RSmallToe": 6624, "RHeel": 6787,
}


def _pole_index(part: str, end: bool) -> int:
    k = PART_NAMES.index(part)
    return _PART_OFFSETS[k] + (_PART_SIZES[k] - 1 if end else 0)


#: Vertex ids of anatomical landmarks: the 11 ids smplx turns into extra joints, plus
#: the top of the head and the fingertips (the end poles of the head and hand tubes).
LANDMARK_VERTEX_IDS: dict[str, int] = dict(
    _SMPLX_LANDMARKS,
    head_top=_pole_index("head", True),
    left_fingertip=_pole_index("left_hand", True),
    right_fingertip=_pole_index("right_hand", True),
)

_X = np.array([1.0, 0.0, 0.0])
_Y = np.array([0.0, 1.0, 0.0])
_Z = np.array([0.0, 0.0, 1.0])
_GENDER_HEIGHT_SCALE = {"neutral": 1.0, "male": 1.76 / 1.70, "female": 1.64 / 1.70}


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# ----------------------------------------------------------------------------- spec
def _neutral_spec() -> dict:
    """Parameters of the body generator: joints plus a few width/depth/radius factors."""
    return {
        "joints": NEUTRAL_JOINTS.copy(),
        "torso_w": 1.0,     # torso half-width factor
        "torso_d": 1.0,     # torso depth factor
        "limb": 1.0,        # arm/leg radius factor
        "neck": 1.0,        # neck radius factor
        "head": 1.0,        # head scale about the head joint
        "belly": 0.0,       # extra forward depth at the belly (m)
        "chest": 0.0,       # extra forward depth at the chest (m)
        "hip": 0.0,         # extra pelvis half-width (m)
        "shoulder": 0.0,    # extra upper-torso half-width (m)
    }


def _copy_spec(spec: dict) -> dict:
    out = dict(spec)
    out["joints"] = spec["joints"].copy()
    return out


def _girth(spec, a):
    s = _copy_spec(spec)
    s["torso_w"] *= 1.0 + 0.08 * a
    s["torso_d"] *= 1.0 + 0.10 * a
    s["limb"] *= 1.0 + 0.05 * a
    s["neck"] *= 1.0 + 0.06 * a
    s["belly"] += 0.006 * a
    return s


def _leg_length(spec, a):
    s = _copy_spec(spec)
    J = s["joints"]
    f = 0.05 * a
    for hip, knee, ankle, foot in ((1, 4, 7, 10), (2, 5, 8, 11)):
        new_knee = J[hip] + (J[knee] - J[hip]) * (1 + f)
        new_ankle = new_knee + (J[ankle] - J[knee]) * (1 + f)
        J[foot] += new_ankle - J[ankle]
        J[knee], J[ankle] = new_knee, new_ankle
    return s


def _arm_length(spec, a):
    s = _copy_spec(spec)
    J = s["joints"]
    f = 0.05 * a
    for sh, el, wr, hd in ((16, 18, 20, 22), (17, 19, 21, 23)):
        new_el = J[sh] + (J[el] - J[sh]) * (1 + f)
        new_wr = new_el + (J[wr] - J[el]) * (1 + f)
        new_hd = new_wr + (J[hd] - J[wr]) * (1 + f)
        J[el], J[wr], J[hd] = new_el, new_wr, new_hd
    return s


def _shoulder_width(spec, a):
    s = _copy_spec(spec)
    J = s["joints"]
    d = 0.012 * a
    for side, collar, chain in ((1.0, 13, (16, 18, 20, 22)), (-1.0, 14, (17, 19, 21, 23))):
        J[collar, 0] += side * 0.4 * d
        J[list(chain), 0] += side * d
    s["shoulder"] += d
    return s


def _hip_width(spec, a):
    s = _copy_spec(spec)
    J = s["joints"]
    d = 0.010 * a
    J[[1, 4, 7, 10], 0] += 0.8 * d
    J[[2, 5, 8, 11], 0] -= 0.8 * d
    s["hip"] += d
    return s


def _torso_length(spec, a):
    s = _copy_spec(spec)
    J = s["joints"]
    d = 0.03 * a
    J[3, 1] += 0.3 * d
    J[6, 1] += 0.7 * d
    J[[9] + list(range(12, 24)), 1] += d
    return s


def _head_size(spec, a):
    s = _copy_spec(spec)
    s["head"] *= 1.0 + 0.07 * a
    return s


def _belly(spec, a):
    s = _copy_spec(spec)
    s["belly"] += 0.02 * a
    s["chest"] += 0.01 * a
    return s


def _limb_thickness(spec, a):
    s = _copy_spec(spec)
    s["limb"] *= 1.0 + 0.12 * a
    return s


# Directions 1..9 as spec perturbations (direction 0, stature, is a linear vertex scale).
_SPEC_DIRECTIONS: tuple[Callable[[dict, float], dict], ...] = (
    _girth, _leg_length, _arm_length, _shoulder_width, _hip_width,
    _torso_length, _head_size, _belly, _limb_thickness,
)
_STATURE_SCALE = np.array([0.015, 0.036, 0.015])  # per-unit (x, y, z) scale increments
_STATURE_CENTRE = np.array([0.0, -0.30, 0.0])  # fixed point of the stature scale (m)


def _gender_spec(gender: str) -> dict:
    spec = _neutral_spec()
    if gender == "male":
        spec = _girth(_hip_width(_shoulder_width(spec, 1.0), -0.3), 0.2)
    elif gender == "female":
        spec = _head_size(_girth(_hip_width(_shoulder_width(spec, -1.0), 1.0), -0.3), -0.3)
    return spec


# ----------------------------------------------------------------------------- tubes
def _frame(D, U_ref, W_ref):
    """Orthonormal cross-section axes (U, W) perpendicular to the unit axis D."""
    U = _unit(U_ref - np.dot(U_ref, D) * D)
    W = _unit(np.cross(D, U))
    if np.dot(W, W_ref) < 0:
        W = -W
    return U, W


def _tube(A, D, U_ref, W_ref, knots, s0, s1, cap0, cap1, n, rings, bump=None):
    """Vertices of one closed tube, ordered [start pole, ring 0 .. ring rings-1, end pole].

    A: (3,) origin of the axis; D: (3,) axis direction; U_ref/W_ref: approximate directions
    of the cross-section axes. knots: (m, 6) rows (s, du, dw, a, b_pos, b_neg): at axial
    coordinate s (metres along D from A) the cross-section is centred at du*U + dw*W and
    extends a along +-U, b_pos along +W and b_neg along -W. s0 < s1 are the poles; the
    radii are rounded off by ellipsoidal caps of length cap0/cap1 at the two ends.
    Returns (points (rings*n+2, 3), handedness +-1 of the (U, W, D) frame).
    """
    D = _unit(D)
    U, W = _frame(D, np.asarray(U_ref, float), np.asarray(W_ref, float))
    handed = 1 if np.dot(np.cross(U, W), D) > 0 else -1
    knots = np.asarray(knots, dtype=np.float64)
    interp = PchipInterpolator(knots[:, 0], knots[:, 1:], axis=0, extrapolate=True)

    def profile(s):
        return interp(np.clip(s, knots[0, 0], knots[-1, 0]))

    u = np.arange(1, rings + 1) / (rings + 1)
    g = 0.55 * u + 0.45 * (1.0 - np.cos(np.pi * u)) / 2.0
    s = s0 + (s1 - s0) * g
    f = np.ones_like(s)
    d0, d1 = s - s0, s1 - s
    m0, m1 = d0 < cap0, d1 < cap1
    f[m0] *= np.sqrt(1.0 - (1.0 - d0[m0] / cap0) ** 2)
    f[m1] *= np.sqrt(1.0 - (1.0 - d1[m1] / cap1) ** 2)
    prof = profile(s)
    du, dw, a, bp, bn = (prof[:, i][:, None] for i in range(5))
    theta = 2.0 * np.pi * np.arange(n) / n
    c, sn = np.cos(theta)[None, :], np.sin(theta)[None, :]
    b = 0.5 * (bp + bn) + 0.5 * (bp - bn) * sn
    off_u = du + f[:, None] * a * c
    off_w = dw + f[:, None] * b * sn
    if bump is not None:
        off_w = off_w + bump(s[:, None], f[:, None] * a * c, sn)
    ring_pts = (A[None, None, :] + s[:, None, None] * D + off_u[..., None] * U + off_w[..., None] * W)
    ends = profile(np.array([s0, s1]))
    poles = A[None, :] + np.array([s0, s1])[:, None] * D + ends[:, 0:1] * U + ends[:, 1:2] * W
    pts = np.concatenate([poles[:1], ring_pts.reshape(-1, 3), poles[1:]], axis=0)
    return pts, handed


def _tube_faces(offset: int, n: int, rings: int, handed: int) -> np.ndarray:
    """Triangles of a tube built by :func:`_tube`, counter-clockwise seen from outside."""
    j = np.arange(n)
    jn = (j + 1) % n
    ring = lambda k: offset + 1 + k * n  # noqa: E731
    start, end = offset, offset + 1 + rings * n
    faces = [np.stack([np.full(n, start), ring(0) + jn, ring(0) + j], axis=1)]
    for k in range(rings - 1):
        a, b = ring(k) + j, ring(k) + jn
        c, d = ring(k + 1) + jn, ring(k + 1) + j
        faces.append(np.stack([a, b, c], axis=1))
        faces.append(np.stack([a, c, d], axis=1))
    faces.append(np.stack([np.full(n, end), ring(rings - 1) + j, ring(rings - 1) + jn], axis=1))
    faces = np.concatenate(faces, axis=0)
    if handed < 0:
        faces = faces[:, [0, 2, 1]]
    return faces


def _part_specs(spec: dict) -> dict:
    """Tube arguments (A, D, U_ref, W_ref, knots, s0, s1, cap0, cap1[, bump]) per part."""
    J = spec["joints"]
    tw, td, lr, nk = spec["torso_w"], spec["torso_d"], spec["limb"], spec["neck"]
    belly, chest, hip, shoulder = spec["belly"], spec["chest"], spec["hip"], spec["shoulder"]
    out = {}

    # Torso (pelvis to shoulders): axis +y through x = z = 0; s is the height y.
    hip_y = 0.5 * (J[1, 1] + J[2, 1])
    sh_y = 0.5 * (J[16, 1] + J[17, 1])
    rows = [  # y, centre z, half-width, front depth, back depth
        (hip_y - 0.05, 0.000, 0.150 + 0.8 * hip, 0.095, 0.105),
        (hip_y, 0.005, 0.165 + hip, 0.100, 0.110),
        (J[0, 1], 0.015, 0.162 + 0.8 * hip, 0.105 + 0.3 * belly, 0.100),
        (J[3, 1], 0.020, 0.142, 0.105 + belly, 0.088),
        (J[6, 1], 0.025, 0.148 + 0.3 * shoulder, 0.108 + 0.7 * belly + 0.5 * chest, 0.092),
        (J[9, 1] + 0.03, 0.025, 0.160 + 0.5 * shoulder, 0.115 + chest, 0.100),
        (sh_y - 0.05, 0.010, 0.170 + 0.8 * shoulder, 0.100 + 0.5 * chest, 0.095),
        (sh_y + 0.01, -0.010, 0.165 + shoulder, 0.075, 0.080),
    ]
    knots = np.array([(y, 0.0, z, w * tw, fr * td, bk * td) for y, z, w, fr, bk in rows])
    out["torso"] = (np.zeros(3), _Y, _X, _Z, knots, hip_y - 0.08, sh_y + 0.075, 0.07, 0.07)

    # Neck: axis +y through the origin column, s relative to the neck joint height.
    top = J[15, 1] - J[12, 1] + 0.03
    knots = np.array([
        (-0.05, 0.0, -0.015, 0.060 * nk, 0.058 * nk, 0.058 * nk),
        (0.00, 0.0, -0.005, 0.054 * nk, 0.055 * nk, 0.055 * nk),
        (top - 0.03, 0.0, 0.010, 0.050 * nk, 0.052 * nk, 0.052 * nk),
    ])
    out["neck"] = (np.array([0.0, J[12, 1], 0.0]), _Y, _X, _Z, knots, -0.08, top, 0.03, 0.03)

    # Head: an egg from the chin (0.085 below the head joint) to the crown (0.155 above),
    # with a nose bump on the front centre.
    knots = np.array([
        (-0.070, 0.0, 0.055, 0.042, 0.045, 0.035),
        (-0.040, 0.0, 0.045, 0.060, 0.075, 0.055),
        (0.000, 0.0, 0.035, 0.072, 0.095, 0.085),
        (0.050, 0.0, 0.030, 0.078, 0.098, 0.098),
        (0.100, 0.0, 0.025, 0.076, 0.092, 0.098),
    ])

    def nose(s, x, sin_t):
        return 0.018 * np.exp(-0.5 * (x / 0.011) ** 2 - 0.5 * ((s - 0.03) / 0.016) ** 2) * np.clip(sin_t, 0, 1) ** 2

    out["head"] = (np.array([0.0, J[15, 1], 0.0]), _Y, _X, _Z, knots, -0.085, 0.155, 0.03, 0.075, nose)

    for side, sgn in (("left", 1.0), ("right", -1.0)):
        sh, el, wr, hd = (16, 18, 20, 22) if sgn > 0 else (17, 19, 21, 23)
        hp, kn, an, ft = (1, 4, 7, 10) if sgn > 0 else (2, 5, 8, 11)
        lat = sgn * _X
        # Upper arm (shoulder -> elbow), U up, W forward.
        L = np.linalg.norm(J[el] - J[sh])
        knots = np.array([
            (-0.04, 0, 0, 0.050 * lr, 0.052 * lr, 0.052 * lr),
            (0.02, 0, 0, 0.052 * lr, 0.055 * lr, 0.055 * lr),
            (0.12, 0, 0, 0.045 * lr, 0.045 * lr, 0.047 * lr),
            (L - 0.02, 0, 0, 0.038 * lr, 0.040 * lr, 0.040 * lr),
        ])
        out[f"{side}_upper_arm"] = (J[sh], J[el] - J[sh], _Y, _Z, knots, -0.075, L + 0.035, 0.04, 0.035)
        # Forearm (elbow -> wrist).
        L = np.linalg.norm(J[wr] - J[el])
        knots = np.array([
            (0.0, 0, 0, 0.038 * lr, 0.042 * lr, 0.042 * lr),
            (0.07, 0, 0, 0.040 * lr, 0.044 * lr, 0.044 * lr),
            (L - 0.02, 0, 0, 0.025 * lr, 0.032 * lr, 0.032 * lr),
        ])
        out[f"{side}_forearm"] = (J[el], J[wr] - J[el], _Y, _Z, knots, -0.035, L + 0.03, 0.03, 0.025)
        # Hand (wrist -> hand joint -> fingertips): flat, palm down.
        L = np.linalg.norm(J[hd] - J[wr])
        knots = np.array([
            (0.0, 0, 0, 0.020, 0.030, 0.030),
            (0.05, 0, 0, 0.018, 0.044, 0.044),
            (L, 0, 0, 0.015, 0.046, 0.046),
            (L + 0.05, 0, 0, 0.011, 0.042, 0.042),
        ])
        out[f"{side}_hand"] = (J[wr], J[hd] - J[wr], _Y, _Z, knots, -0.025, L + 0.10, 0.02, 0.045)
        # Thigh (hip -> knee), U lateral, W forward.
        L = np.linalg.norm(J[kn] - J[hp])
        knots = np.array([
            (-0.06, 0, 0, 0.070 * lr, 0.085 * lr, 0.085 * lr),
            (0.03, 0, 0, 0.072 * lr, 0.088 * lr, 0.088 * lr),
            (0.18, 0, 0, 0.066 * lr, 0.072 * lr, 0.075 * lr),
            (L - 0.03, 0, 0, 0.053 * lr, 0.056 * lr, 0.056 * lr),
            (L, 0, 0, 0.052 * lr, 0.055 * lr, 0.055 * lr),
        ])
        out[f"{side}_thigh"] = (J[hp], J[kn] - J[hp], lat, _Z, knots, -0.11, L + 0.045, 0.06, 0.045)
        # Shin (knee -> ankle) with a calf bulge at the back.
        L = np.linalg.norm(J[an] - J[kn])
        knots = np.array([
            (0.0, 0, 0.0, 0.050 * lr, 0.052 * lr, 0.050 * lr),
            (0.11, 0, -0.010, 0.050 * lr, 0.045 * lr, 0.062 * lr),
            (0.28, 0, -0.005, 0.036 * lr, 0.036 * lr, 0.042 * lr),
            (L - 0.01, 0, 0.0, 0.032 * lr, 0.034 * lr, 0.034 * lr),
        ])
        out[f"{side}_shin"] = (J[kn], J[an] - J[kn], lat, _Z, knots, -0.045, L + 0.05, 0.045, 0.03)
        # Foot: axis +z from the ankle, U lateral, W up; flat sole ~7 cm below the ankle.
        knots = np.array([
            (-0.045, 0.000, -0.020, 0.030, 0.040, 0.050),
            (0.000, 0.003, -0.015, 0.037, 0.050, 0.055),
            (0.060, 0.012, -0.035, 0.044, 0.040, 0.035),
            (0.120, 0.025, -0.050, 0.048, 0.028, 0.020),
            (0.170, 0.030, -0.052, 0.042, 0.020, 0.018),
        ])
        out[f"{side}_foot"] = (J[an], _Z, lat, _Y, knots, -0.062, 0.21, 0.03, 0.045)
    return out


def _generate(spec: dict) -> tuple[np.ndarray, list]:
    """(6890, 3) vertices of the spec in the generated order, and each part's handedness."""
    parts = _part_specs(spec)
    chunks, handed = [], []
    for name, n, rings, _ in _LAYOUT:
        args = parts[name]
        bump = args[9] if len(args) > 9 else None
        A, D, U_ref, W_ref, knots, s0, s1, cap0, cap1 = args[:9]
        pts, h = _tube(np.asarray(A, float), np.asarray(D, float), U_ref, W_ref, knots,
                       s0, s1, cap0, cap1, n, rings, bump)
        if name == "head":
            centre = spec["joints"][15]
            pts = centre + (pts - centre) * spec["head"]
        chunks.append(pts)
        handed.append(h)
    return np.concatenate(chunks, axis=0), handed


# ----------------------------------------------------------------------------- topology
def _natural_labels() -> np.ndarray:
    return np.repeat(np.arange(len(_LAYOUT)), _PART_SIZES)


def _natural_symmetry() -> np.ndarray:
    """Mirror (x -> -x) partner of every vertex in the generated order."""
    sym = np.arange(NUM_VERTICES)
    for k, (name, n, rings, _) in enumerate(_LAYOUT):
        off = _PART_OFFSETS[k]
        if name.startswith("left_"):
            other = PART_NAMES.index("right_" + name[5:])
            oo = _PART_OFFSETS[other]
            local = np.arange(_PART_SIZES[k])
            sym[off + local] = oo + local
            sym[oo + local] = off + local
        elif not name.startswith("right_"):
            j = np.arange(n)
            mj = (n // 2 - j) % n
            for r in range(rings):
                sym[off + 1 + r * n + j] = off + 1 + r * n + mj
    return sym


@functools.lru_cache(maxsize=1)
def _topology() -> dict:
    """Faces, landmark permutation and symmetry shared by every gender (computed once).

    perm[new] = old maps final vertex ids to generated ids; inv[old] = new.
    """
    verts, handed = _generate(_neutral_spec())
    faces = np.concatenate([
        _tube_faces(_PART_OFFSETS[k], n, rings, handed[k]) for k, (_, n, rings, _) in enumerate(_LAYOUT)
    ])
    labels = _natural_labels()
    sym = _natural_symmetry()
    J = NEUTRAL_JOINTS

    def nearest(part, target, mask=None, dims=(0, 1, 2)):
        idx = np.flatnonzero(labels == PART_NAMES.index(part))
        if mask is not None:
            idx = idx[mask(verts[idx])]
        d = verts[idx][:, dims] - np.asarray(target)[None, :]
        return int(idx[np.argmin((d ** 2).sum(1))])

    head = verts[labels == PART_NAMES.index("head")]
    nose = nearest("head", (0.0, J[15, 1] + 0.03, head[:, 2].max()))
    leye = nearest("head", (0.033, J[15, 1] + 0.065), mask=lambda v: v[:, 2] > J[15, 2] + 0.03, dims=(0, 1))
    lear = nearest("head", (J[15, 1] + 0.045, J[15, 2] - 0.02), mask=lambda v: v[:, 0] > 0.04, dims=(1, 2))
    foot = verts[labels == PART_NAMES.index("left_foot")]
    sole, tip = foot[:, 1].min(), foot[:, 2].max()
    lbig = nearest("left_foot", (J[10, 0] - 0.015, sole + 0.012, tip - 0.005))
    lsmall = nearest("left_foot", (J[10, 0] + 0.035, sole + 0.010, tip - 0.045))
    lheel = nearest("left_foot", (J[7, 0], sole + 0.010, foot[:, 2].min()))
    chosen = {
        "nose": nose, "leye": leye, "reye": sym[leye], "lear": lear, "rear": sym[lear],
        "LBigToe": lbig, "LSmallToe": lsmall, "LHeel": lheel,
        "RBigToe": sym[lbig], "RSmallToe": sym[lsmall], "RHeel": sym[lheel],
    }
    assert len(set(int(v) for v in chosen.values())) == len(chosen)
    perm = np.arange(NUM_VERTICES)
    pos = np.arange(NUM_VERTICES)  # pos[old] = current new position
    for name, target in _SMPLX_LANDMARKS.items():
        old = int(chosen[name])
        p = pos[old]
        other = perm[target]
        perm[p], perm[target] = other, old
        pos[other], pos[old] = p, target
    inv = np.empty_like(perm)
    inv[perm] = np.arange(NUM_VERTICES)
    for name in ("head_top", "left_fingertip", "right_fingertip"):
        assert perm[LANDMARK_VERTEX_IDS[name]] == LANDMARK_VERTEX_IDS[name]
    return {
        "perm": perm,
        "inv": inv,
        "faces_natural": faces,
        "faces": inv[faces],
        "labels": labels[perm],
        "labels_natural": labels,
        "sym": inv[sym[perm]],
        "handed": tuple(handed),
    }


def vertex_part_labels() -> np.ndarray:
    """(6890,) int64 index into :data:`PART_NAMES` of each vertex (same for every gender)."""
    return _topology()["labels"].copy()


# ----------------------------------------------------------------------------- rigging
def _chain_weights(points, root, planes):
    """Blend weights (N, 24) along a chain: start fully on ``root``; for each plane
    (joint, point, normal, half_width) blend towards ``joint`` with a smoothstep over
    signed distances [-half_width, +half_width] to the plane."""
    w = np.zeros((len(points), NUM_JOINTS))
    w[:, root] = 1.0
    for joint, p, nrm, h in planes:
        t = _smoothstep(((points - p) @ nrm + h) / (2.0 * h))[:, None]
        w *= 1.0 - t
        w[:, joint] += t[:, 0]
    return w


def _joint_planes(J):
    """(point, normal) of the blending/regression planes at the limb joints."""
    d = lambda a, b: _unit(J[b] - J[a])  # noqa: E731
    planes = {}
    for cl, sh, el, wr, hd in ((13, 16, 18, 20, 22), (14, 17, 19, 21, 23)):
        planes[sh] = _unit(d(cl, sh) + d(sh, el))
        planes[el] = _unit(d(sh, el) + d(el, wr))
        planes[wr] = _unit(d(el, wr) + d(wr, hd))
        planes[hd] = d(wr, hd)
    for hp, kn, an, ft in ((1, 4, 7, 10), (2, 5, 8, 11)):
        planes[hp] = d(hp, kn)
        planes[kn] = _unit(d(hp, kn) + d(kn, an))
        planes[an] = d(kn, an)
        planes[ft] = _Z.copy()
    for j in (0, 3, 6, 9, 12, 13, 14, 15):
        planes[j] = _Y.copy()
    return planes


def _skinning_weights(verts, labels, J):
    """(V, 24) skinning weights for vertices in the generated order."""
    N = _joint_planes(J)
    W = np.zeros((len(verts), NUM_JOINTS))

    def pl(j, h):
        return (j, J[j], N[j], h)

    for k, name in enumerate(PART_NAMES):
        m = labels == k
        P = verts[m]
        if name == "torso":
            levels = [(J[0, 1], 0), (J[3, 1], 3), (J[6, 1], 6), (J[9, 1], 9)]
            w = np.zeros((len(P), NUM_JOINTS))
            ys = np.array([lv[0] for lv in levels])
            for i, (_, j) in enumerate(levels):
                hat = np.zeros(len(levels))
                hat[i] = 1.0
                w[:, j] = np.interp(P[:, 1], ys, hat)
            collar = (_smoothstep((np.abs(P[:, 0]) - 0.05) / 0.08)
                      * _smoothstep((P[:, 1] - (0.5 * (J[13, 1] + J[14, 1]) - 0.10)) / 0.08))
            w *= (1.0 - collar)[:, None]
            left = P[:, 0] > 0
            w[left, 13] += collar[left]
            w[~left, 14] += collar[~left]
        elif name == "neck":
            w = _chain_weights(P, 9, [pl(12, 0.03), pl(15, 0.02)])
        elif name == "head":
            w = np.zeros((len(P), NUM_JOINTS))
            w[:, 15] = 1.0
        else:
            side = 0 if name.startswith("left_") else 1
            cl, sh, el, wr, hd = ((13, 16, 18, 20, 22), (14, 17, 19, 21, 23))[side]
            hp, kn, an, ft = ((1, 4, 7, 10), (2, 5, 8, 11))[side]
            part = name.split("_", 1)[1]
            chain = {
                "upper_arm": (cl, [pl(sh, 0.035), pl(el, 0.025)]),
                "forearm": (sh, [pl(el, 0.025), pl(wr, 0.02)]),
                "hand": (el, [pl(wr, 0.02), pl(hd, 0.02)]),
                "thigh": (0, [pl(hp, 0.05), pl(kn, 0.03)]),
                "shin": (hp, [pl(kn, 0.03), pl(an, 0.03)]),
                "foot": (an, [pl(ft, 0.02)]),
            }[part]
            w = _chain_weights(P, *chain)
        W[m] = w
    return W / W.sum(axis=1, keepdims=True)


# Parts whose vertices near each joint regress it, and the starting band half-width (m);
# the collars use only their own side of the torso (see _REGRESSOR_SIDE).
_REGRESSOR_SUPPORT = {
    0: (("torso",), 0.03), 3: (("torso",), 0.03), 6: (("torso",), 0.03), 9: (("torso",), 0.03),
    13: (("torso",), 0.03), 14: (("torso",), 0.03), 12: (("neck",), 0.025),
    15: (("head", "neck"), 0.02),
    1: (("left_thigh",), 0.035), 2: (("right_thigh",), 0.035),
    4: (("left_thigh", "left_shin"), 0.03), 5: (("right_thigh", "right_shin"), 0.03),
    7: (("left_shin",), 0.03), 8: (("right_shin",), 0.03),
    10: (("left_foot",), 0.02), 11: (("right_foot",), 0.02),
    16: (("left_upper_arm",), 0.03), 17: (("right_upper_arm",), 0.03),
    18: (("left_upper_arm", "left_forearm"), 0.025), 19: (("right_upper_arm", "right_forearm"), 0.025),
    20: (("left_forearm", "left_hand"), 0.02), 21: (("right_forearm", "right_hand"), 0.02),
    22: (("left_hand",), 0.02), 23: (("right_hand",), 0.02),
}


_REGRESSOR_SIDE = {13: 1.0, 14: -1.0}


def _joint_regressor(verts, labels, J) -> np.ndarray:
    """(24, V) dense regressor: each row non-negative, summing to 1, regressing J exactly.

    Each joint is a non-negative combination of the vertices of its part(s) in a band
    around the joint's plane (widened until there are vertices on both sides), close to
    a uniform average of that band, with the weighted mean pinned to the joint by NNLS.
    """
    N = _joint_planes(J)
    R = np.zeros((NUM_JOINTS, len(verts)))
    for j in range(NUM_JOINTS):
        parts, h = _REGRESSOR_SUPPORT[j]
        cand = np.flatnonzero(np.isin(labels, [PART_NAMES.index(p) for p in parts]))
        if j in _REGRESSOR_SIDE:
            cand = cand[_REGRESSOR_SIDE[j] * verts[cand, 0] > 0.0]
        dist = (verts[cand] - J[j]) @ N[j]
        while True:
            sel = np.abs(dist) < h
            if (dist[sel] > 0).sum() >= 8 and (dist[sel] < 0).sum() >= 8:
                break
            h *= 1.25
        idx = cand[sel]
        P = verts[idx]
        m = len(idx)
        lam, mu = 1.0, 1e-3
        M = np.vstack([lam * P.T, lam * np.ones((1, m)), mu * np.eye(m)])
        y = np.concatenate([lam * J[j], [lam], mu * np.full(m, 1.0 / m)])
        w, _ = nnls(M, y, maxiter=50 * m)
        w /= w.sum()
        R[j, idx] = w
    return R


# ----------------------------------------------------------------------------- public
def _jitter(verts: np.ndarray, seed: int) -> np.ndarray:
    """Smooth, deterministic surface perturbation of ~2 mm (none for seed 0)."""
    if seed == 0:
        return verts
    rng = np.random.default_rng(seed)
    out = verts.copy()
    for _ in range(6):
        k = rng.normal(size=3)
        k *= 2.0 * np.pi / rng.uniform(0.25, 0.6) / np.linalg.norm(k)
        direction = _unit(rng.normal(size=3))
        out += 0.002 * np.sin(verts @ k + rng.uniform(0, 2 * np.pi))[:, None] * direction / np.sqrt(3)
    return out


def build_synthetic_body(gender: str = "neutral", seed: int = 0) -> dict:
    """Build the synthetic body model as a dict in the official SMPL pickle layout.

    Args:
        gender: 'neutral' (~1.70 m), 'male' (~1.76 m, broader shoulders) or 'female'
            (~1.64 m, wider hips, narrower shoulders). Topology and faces are shared.
        seed: 0 gives the canonical model; any other value adds a smooth, deterministic
            ~2 mm perturbation of the template surface (joints stay where designed).

    Returns:
        dict with numpy values (metres, SMPL axes: y up, +z forward, +x the body's left):
        v_template (6890, 3) float64; shapedirs (6890, 3, 10) float64 (meanings in
        :data:`SHAPE_DIRECTION_MEANINGS`); posedirs (6890, 3, 207) float64, all zeros
        (no pose correctives); J_regressor (24, 6890) scipy.sparse.csc_matrix (rows
        non-negative, summing to 1); weights (6890, 24) float64 (rows sum to 1);
        kintree_table (2, 24) int64 (row 0 the parents, 4294967295 for the root; row 1
        arange(24)); f (13720, 3) uint32, counter-clockwise seen from outside; J (24, 3)
        float64 the designed joints (= J_regressor @ v_template); vert_sym_idxs (6890,)
        int64 mirror partner of each vertex; bs_style 'lbs'; bs_type 'lrotmin'.
        Deterministic for the same arguments.
    """
    gender = str(gender).lower()
    if gender not in _GENDER_HEIGHT_SCALE:
        raise ValueError(f"unknown gender {gender!r}; choose neutral, male or female")
    topo = _topology()
    perm = topo["perm"]
    spec = _gender_spec(gender)
    scale = _GENDER_HEIGHT_SCALE[gender]
    base, handed = _generate(spec)
    if tuple(handed) != topo["handed"]:
        raise RuntimeError("part frame handedness changed; the face winding would be wrong")
    base = base * scale
    joints = spec["joints"] * scale
    shapedirs = np.zeros((NUM_VERTICES, 3, 1 + len(_SPEC_DIRECTIONS)))
    shapedirs[:, :, 0] = (base - _STATURE_CENTRE * scale) * _STATURE_SCALE[None, :]
    for k, direction in enumerate(_SPEC_DIRECTIONS, start=1):
        shapedirs[:, :, k] = _generate(direction(spec, 1.0))[0] * scale - base
    v_template = _jitter(base, int(seed))
    labels = topo["labels_natural"]
    weights = _skinning_weights(v_template, labels, joints)
    regressor = _joint_regressor(v_template, labels, joints)
    kintree = np.stack([np.array(PARENTS, dtype=np.int64), np.arange(NUM_JOINTS, dtype=np.int64)])
    kintree[0, 0] = 4294967295
    return {
        "v_template": np.ascontiguousarray(v_template[perm]),
        "shapedirs": np.ascontiguousarray(shapedirs[perm]),
        "posedirs": np.zeros((NUM_VERTICES, 3, 207), dtype=np.float64),
        "J_regressor": scipy.sparse.csc_matrix(regressor[:, perm]),
        "weights": np.ascontiguousarray(weights[perm]),
        "kintree_table": kintree,
        "f": topo["faces"].astype(np.uint32),
        "J": joints.copy(),
        "vert_sym_idxs": topo["sym"].astype(np.int64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def write_synthetic_body_model(out_dir, genders=("neutral", "male", "female")) -> Path:
    """Write SMPL_<GENDER>.pkl for each gender into ``out_dir`` (created if missing).

    The files are pickle protocol 2 dicts in the official layout (see
    :func:`build_synthetic_body`), loadable with ``pickle.load(f, encoding='latin1')``
    and by ``smplx.SMPL(model_path=out_dir, gender=...)``. Returns ``out_dir`` as a Path.
    """
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for gender in genders:
        model = build_synthetic_body(gender)
        target = out / f"SMPL_{str(gender).upper()}.pkl"
        tmp = target.with_suffix(".pkl.tmp")
        with open(tmp, "wb") as handle:
            pickle.dump(model, handle, protocol=2)
        tmp.replace(target)
    return out
