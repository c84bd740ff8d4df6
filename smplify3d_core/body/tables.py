"""Tables derived from whichever SMPL-format model is loaded.

* the COCO-17 joint regressor (SMPL joints for the body, fixed vertices for nose/eyes/ears),
* the HumanM3 15-joint regressor,
* the 18-part vertex segmentation used by the visibility filter (from the skinning weights),
* a ~2000-vertex uniform subset of the template (farthest-point sampling).

They are computed once per model (keyed by a digest of its arrays) and cached in memory.
A user may replace either regressor with their own ``.npy`` file of shape (17, V) / (15, V).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from smplify3d_core.body.loader import SMPLModelData

COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# COCO-17 keypoint -> ("joint", SMPL joint id) or ("vertex", vertex id); vertex ids as in smplx.
COCO17_SOURCES = (
    ("vertex", 332), ("vertex", 2800), ("vertex", 6260), ("vertex", 583), ("vertex", 4071),
    ("joint", 16), ("joint", 17), ("joint", 18), ("joint", 19), ("joint", 20), ("joint", 21),
    ("joint", 1), ("joint", 2), ("joint", 4), ("joint", 5), ("joint", 7), ("joint", 8),
)

HUMANM3_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "neck", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
)
HUMANM3_SMPL_JOINTS = (0, 1, 2, 4, 5, 7, 8, 12, 15, 16, 17, 18, 19, 20, 21)

BODY_PARTS = (
    "head", "chest", "r_shoulder", "r_upper_arm", "r_lower_arm", "r_hand", "l_shoulder",
    "l_upper_arm", "l_lower_arm", "l_hand", "belly", "hips", "r_upper_leg", "r_lower_leg",
    "r_foot", "l_upper_leg", "l_lower_leg", "l_foot",
)
# COCO-17 keypoints that must all be visible for a part to count as visible (the research method's table).
PART_KEYPOINTS = {
    "head": (1, 2), "chest": (5, 6), "r_shoulder": (6,), "r_upper_arm": (6, 8), "r_lower_arm": (8, 10),
    "r_hand": (10,), "l_shoulder": (5,), "l_upper_arm": (5, 7), "l_lower_arm": (7, 9), "l_hand": (9,),
    "belly": (11, 12), "hips": (11, 12), "r_upper_leg": (12, 14), "r_lower_leg": (14, 16), "r_foot": (16,),
    "l_upper_leg": (11, 13), "l_lower_leg": (13, 15), "l_foot": (15,),
}
# SMPL joint whose rotation drives each part (occluded-part deviation term); chest/belly/hips have none.
PART_CONTROL_JOINT = {
    "head": 12, "r_shoulder": 14, "r_upper_arm": 17, "r_lower_arm": 19, "r_hand": 21,
    "l_shoulder": 13, "l_upper_arm": 16, "l_lower_arm": 18, "l_hand": 20,
    "r_upper_leg": 2, "r_lower_leg": 5, "r_foot": 8, "l_upper_leg": 1, "l_lower_leg": 4, "l_foot": 7,
}
# SMPL joint of largest skinning weight -> body part.
_JOINT_TO_PART = {
    0: "hips", 1: "l_upper_leg", 2: "r_upper_leg", 3: "belly", 4: "l_lower_leg", 5: "r_lower_leg",
    6: "belly", 7: "l_foot", 8: "r_foot", 9: "chest", 10: "l_foot", 11: "r_foot", 12: "head",
    13: "l_shoulder", 14: "r_shoulder", 15: "head", 16: "l_upper_arm", 17: "r_upper_arm",
    18: "l_lower_arm", 19: "r_lower_arm", 20: "l_hand", 21: "r_hand", 22: "l_hand", 23: "r_hand",
}
UNIFORM_SUBSET_SIZE = 2000


@dataclass(frozen=True)
class BodyTables:
    """Per-model tables.

    coco17_regressor: (17, V) rows summing to 1; humanm3_regressor: (15, V);
    vertex_part: (V,) index into :data:`BODY_PARTS`; uniform_order: (M,) vertex ids in the order
    farthest-point sampling picked them, so that every prefix is itself a uniform subset
    (:meth:`coarse_subset`); :attr:`uniform_subset`: the same ids sorted.
    """

    coco17_regressor: np.ndarray
    humanm3_regressor: np.ndarray
    vertex_part: np.ndarray
    uniform_order: np.ndarray

    @property
    def uniform_subset(self) -> np.ndarray:
        """(M,) sorted vertex ids of the uniform surface subset."""
        return np.sort(self.uniform_order)

    def coarse_subset(self, count: int) -> np.ndarray:
        """(min(count, M),) sorted vertex ids: the first ``count`` farthest-point samples, a uniform subset
        of :attr:`uniform_subset` with wider spacing."""
        if count < 1:
            raise ValueError(f"a coarse vertex subset needs at least one vertex, got {count}")
        return np.sort(self.uniform_order[:count])

    def part_vertices(self, part: str) -> np.ndarray:
        """Vertex ids of the named body part."""
        return np.flatnonzero(self.vertex_part == BODY_PARTS.index(part))


def coco17_regressor(data: SMPLModelData) -> np.ndarray:
    """(17, V) regressor: SMPL joint rows for the body, one-hot vertex rows for the face."""
    rows = np.zeros((17, data.num_vertices))
    for k, (kind, index) in enumerate(COCO17_SOURCES):
        if kind == "joint":
            rows[k] = data.J_regressor[index]
        else:
            rows[k, index] = 1.0
    return rows


def humanm3_regressor(data: SMPLModelData) -> np.ndarray:
    """(15, V) regressor for the HumanM3 joints (rows of SMPL's joint regressor)."""
    return data.J_regressor[list(HUMANM3_SMPL_JOINTS)].copy()


def segment_vertices(weights: np.ndarray) -> np.ndarray:
    """(V, 24) skinning weights -> (V,) part index: the part of the joint of largest weight."""
    joint_of_vertex = np.argmax(weights, axis=1)
    lookup = np.array([BODY_PARTS.index(_JOINT_TO_PART[j]) for j in range(24)])
    return lookup[joint_of_vertex]


def farthest_point_order(points: np.ndarray, count: int) -> np.ndarray:
    """Greedy farthest-point sampling of ``count`` ids from (N, 3) points, in the order they were picked
    (each prefix is a farthest-point subset of its own size).

    Starts from the point farthest from the centroid, so the result is deterministic.
    """
    count = min(count, len(points))
    chosen = np.empty(count, dtype=np.int64)
    chosen[0] = int(np.argmax(np.linalg.norm(points - points.mean(0), axis=1)))
    nearest = np.linalg.norm(points - points[chosen[0]], axis=1)
    for i in range(1, count):
        chosen[i] = int(np.argmax(nearest))
        np.minimum(nearest, np.linalg.norm(points - points[chosen[i]], axis=1), out=nearest)
    return chosen


def load_regressor(path, rows: int, num_vertices: int) -> np.ndarray:
    """Read a user-given ``.npy`` regressor and check it is (rows, V)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"joint regressor file {path} does not exist")
    regressor = np.load(path, allow_pickle=False).astype(np.float64)
    if regressor.shape != (rows, num_vertices):
        raise ValueError(f"joint regressor {path} must have shape ({rows}, {num_vertices}), got {regressor.shape}")
    return regressor


def _model_digest(data: SMPLModelData) -> str:
    digest = hashlib.sha1()
    for array in (data.v_template, data.weights, data.J_regressor):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


_CACHE: dict = {}


def body_tables(
    data: SMPLModelData,
    coco17_regressor_path: Optional[str] = None,
    humanm3_regressor_path: Optional[str] = None,
    uniform_subset_size: int = UNIFORM_SUBSET_SIZE,
) -> BodyTables:
    """Tables for ``data``, computed on first use and cached per model and options."""
    key = (_model_digest(data), coco17_regressor_path, humanm3_regressor_path, uniform_subset_size)
    if key not in _CACHE:
        order = farthest_point_order(data.v_template, uniform_subset_size)
        coco = (
            load_regressor(coco17_regressor_path, 17, data.num_vertices)
            if coco17_regressor_path else coco17_regressor(data)
        )
        humanm3 = (
            load_regressor(humanm3_regressor_path, 15, data.num_vertices)
            if humanm3_regressor_path else humanm3_regressor(data)
        )
        _CACHE[key] = BodyTables(
            coco17_regressor=coco,
            humanm3_regressor=humanm3,
            vertex_part=segment_vertices(data.weights),
            uniform_order=order,
        )
    return _CACHE[key]
