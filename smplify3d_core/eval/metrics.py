"""Mesh and joint error metrics (numpy, pure functions).

Conventions (those of the HumanM3 / SLOPER4D / 3DPW evaluations):

* Inputs are batched: joints ``(B, J, 3)``, vertices ``(B, V, 3)``, in any consistent
  length unit (the functions return errors in the *input* unit) except where a
  threshold has a unit (``pck``/``auc`` thresholds are in the input unit too, and their
  defaults assume metres). :func:`score_against_truth` takes metres and reports millimetres.
* MPJPE and PVE are root-aligned: the root joint (SMPL pelvis, index 0, by default) of
  each skeleton is subtracted before comparing. PA-* metrics use a per-sample similarity
  Procrustes alignment (rotation, isotropic scale, translation) of the prediction onto
  the target.
* Every per-sample metric returns an array of shape ``(B,)``.
* Inputs may be numpy arrays, nested sequences or (CPU) torch tensors. Non-finite values
  (NaN or inf) raise a ``ValueError`` that names the offending argument.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

RootIndex = Union[int, Sequence[int], None]

__all__ = [
    "procrustes_transform",
    "procrustes_align",
    "mpjpe",
    "pa_mpjpe",
    "pve",
    "pa_pve",
    "pck",
    "pck_curve",
    "auc",
    "mesh_edges",
    "mpere",
    "score_against_truth",
]


# --------------------------------------------------------------------------- validation


def _to_numpy(value, name: str) -> np.ndarray:
    """Convert ``value`` (array-like or torch tensor) to a float64 numpy array."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor, no torch import
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array, got {type(value).__name__}") from exc
    return array


def _points(value, name: str) -> np.ndarray:
    """Validate a ``(B, N, 3)`` finite point array."""
    array = _to_numpy(value, name)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (B, N, 3), got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must have B >= 1 and N >= 1, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf values")
    return array


def _pair(pred, target, pred_name: str, target_name: str) -> Tuple[np.ndarray, np.ndarray]:
    """Validate two ``(B, N, 3)`` arrays of identical shape."""
    p = _points(pred, pred_name)
    t = _points(target, target_name)
    if p.shape != t.shape:
        raise ValueError(
            f"{pred_name} and {target_name} must have the same shape, got {p.shape} and {t.shape}"
        )
    return p, t


def _roots(points: np.ndarray, root_index: RootIndex, name: str) -> Optional[np.ndarray]:
    """Root position ``(B, 1, 3)`` of ``points``: one joint, the mean of several, or None."""
    if root_index is None:
        return None
    if isinstance(root_index, (int, np.integer)):
        indices = [int(root_index)]
    else:
        try:
            indices = [int(i) for i in root_index]
        except TypeError as exc:
            raise ValueError(
                f"root_index must be an int, a sequence of ints or None, got {root_index!r}"
            ) from exc
        if len(indices) == 0:
            raise ValueError("root_index must not be an empty sequence")
    n = points.shape[1]
    for i in indices:
        if not -n <= i < n:
            raise ValueError(f"root_index {i} is out of range for {name} with {n} points")
    return points[:, indices, :].mean(axis=1, keepdims=True)


def _root_align(pred: np.ndarray, target: np.ndarray, root_index: RootIndex):
    pred_root = _roots(pred, root_index, "pred")
    target_root = _roots(target, root_index, "target")
    if pred_root is None:
        return pred, target
    return pred - pred_root, target - target_root


# --------------------------------------------------------------------------- Procrustes


def procrustes_transform(pred, target) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample similarity transform that best maps ``pred`` onto ``target``.

    Solves ``min_{s,R,t} sum_n ||s R p_n + t - q_n||^2`` (Umeyama 1991) with ``R`` a proper
    rotation (det +1: a reflection is never returned, even when the target is a mirror
    image of the prediction), ``s`` an isotropic scale and ``t`` a translation.

    Args:
        pred: (B, N, 3) points to move.
        target: (B, N, 3) corresponding target points.

    Returns:
        scale (B,), R (B, 3, 3), t (B, 3) such that the aligned points are
        ``scale[:, None, None] * pred @ R.transpose(0, 2, 1) + t[:, None, :]``.
        If all of a sample's ``pred`` points coincide, its scale is 0 (every point maps to
        the target centroid) and R is the identity.
    """
    p, q = _pair(pred, target, "pred", "target")
    mu_p = p.mean(axis=1, keepdims=True)
    mu_q = q.mean(axis=1, keepdims=True)
    x = p - mu_p
    y = q - mu_q
    var_p = np.sum(x * x, axis=(1, 2))  # (B,)
    cov = np.einsum("bni,bnj->bij", x, y)  # (B, 3, 3) = X^T Y
    u, sing, vt = np.linalg.svd(cov)
    v = np.transpose(vt, (0, 2, 1))
    ut = np.transpose(u, (0, 2, 1))
    d = np.sign(np.linalg.det(v @ ut))
    d = np.where(d == 0, 1.0, d)
    fix = np.tile(np.eye(3), (p.shape[0], 1, 1))
    fix[:, 2, 2] = d
    rot = v @ fix @ ut  # (B, 3, 3); maps x -> y as R x
    degenerate = var_p <= np.finfo(np.float64).tiny
    trace = sing[:, 0] + sing[:, 1] + d * sing[:, 2]
    scale = np.where(degenerate, 0.0, trace / np.where(degenerate, 1.0, var_p))
    rot[degenerate] = np.eye(3)
    t = mu_q[:, 0, :] - scale[:, None] * np.einsum("bij,bj->bi", rot, mu_p[:, 0, :])
    return scale, rot, t


def procrustes_align(pred, target) -> np.ndarray:
    """Align ``pred`` (B, N, 3) onto ``target`` (B, N, 3) by per-sample similarity Procrustes.

    Returns the aligned prediction, (B, N, 3), in the target's frame and units.
    See :func:`procrustes_transform` for the transform itself.
    """
    p = _points(pred, "pred")
    scale, rot, t = procrustes_transform(p, target)
    return scale[:, None, None] * np.einsum("bij,bnj->bni", rot, p) + t[:, None, :]


# --------------------------------------------------------------------------- joint / vertex errors


def mpjpe(pred, target, root_index: RootIndex = 0) -> np.ndarray:
    """Mean per-joint position error, per sample.

    Args:
        pred: (B, J, 3) predicted joints.
        target: (B, J, 3) ground-truth joints (same joint order).
        root_index: joint subtracted from each skeleton before comparing: an int (SMPL
            pelvis = 0), a sequence of ints (their mean is the root, e.g. the two hips),
            or None for no alignment.

    Returns:
        (B,) mean Euclidean joint error, in the input unit.
    """
    p, t = _pair(pred, target, "pred", "target")
    p, t = _root_align(p, t, root_index)
    return np.linalg.norm(p - t, axis=-1).mean(axis=-1)


def pa_mpjpe(pred, target) -> np.ndarray:
    """Procrustes-aligned MPJPE: (B,) mean joint error after a per-sample similarity
    alignment of ``pred`` (B, J, 3) onto ``target`` (B, J, 3); input unit."""
    p, t = _pair(pred, target, "pred", "target")
    return np.linalg.norm(procrustes_align(p, t) - t, axis=-1).mean(axis=-1)


def pve(pred_verts, target_verts, pred_root=None, target_root=None) -> np.ndarray:
    """Per-vertex error, per sample.

    Args:
        pred_verts: (B, V, 3) predicted mesh vertices.
        target_verts: (B, V, 3) ground-truth vertices (same topology).
        pred_root, target_root: (B, 3) root (pelvis joint) positions subtracted from each mesh
            before comparing (PVE is reported pelvis-aligned). Give both or neither; with
            neither, no alignment is done.

    Returns:
        (B,) mean Euclidean vertex error, in the input unit.
    """
    p, t = _pair(pred_verts, target_verts, "pred_verts", "target_verts")
    if (pred_root is None) != (target_root is None):
        raise ValueError("pred_root and target_root must both be given or both be None")
    if pred_root is not None:
        roots = []
        for value, name in ((pred_root, "pred_root"), (target_root, "target_root")):
            r = _to_numpy(value, name)
            if r.shape != (p.shape[0], 3):
                raise ValueError(f"{name} must have shape ({p.shape[0]}, 3), got {r.shape}")
            if not np.all(np.isfinite(r)):
                raise ValueError(f"{name} contains NaN or inf values")
            roots.append(r)
        p = p - roots[0][:, None, :]
        t = t - roots[1][:, None, :]
    return np.linalg.norm(p - t, axis=-1).mean(axis=-1)


def pa_pve(pred_verts, target_verts) -> np.ndarray:
    """Procrustes-aligned PVE: (B,) mean vertex error after a per-sample similarity alignment
    of ``pred_verts`` (B, V, 3) onto ``target_verts`` (B, V, 3); input unit."""
    p, t = _pair(pred_verts, target_verts, "pred_verts", "target_verts")
    return np.linalg.norm(procrustes_align(p, t) - t, axis=-1).mean(axis=-1)


# --------------------------------------------------------------------------- PCK / AUC


def _joint_errors(pred, target, root_index: RootIndex) -> np.ndarray:
    p, t = _pair(pred, target, "pred", "target")
    p, t = _root_align(p, t, root_index)
    return np.linalg.norm(p - t, axis=-1)  # (B, J)


def pck(pred, target, threshold: float = 0.05, root_index: RootIndex = 0) -> np.ndarray:
    """Percentage of correct keypoints, per sample.

    A joint is correct when its error after root alignment is ``<= threshold``. The root
    joint itself is counted (its error is 0 after alignment with an int ``root_index``).

    Args:
        pred, target: (B, J, 3) joints.
        threshold: distance in the input unit (default 0.05 = 50 mm for metres).
        root_index: as in :func:`mpjpe`.

    Returns:
        (B,) fraction of joints in [0, 1].
    """
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a finite non-negative number, got {threshold}")
    errors = _joint_errors(pred, target, root_index)
    return np.mean(errors <= threshold, axis=-1)


def pck_curve(
    pred, target, max_threshold: float = 0.2, steps: int = 41, root_index: RootIndex = 0
) -> Tuple[np.ndarray, np.ndarray]:
    """PCK at ``steps`` evenly spaced thresholds from 0 to ``max_threshold`` (inclusive).

    Returns:
        thresholds (T,) and pck values (B, T).
    """
    if not np.isfinite(max_threshold) or max_threshold <= 0:
        raise ValueError(f"max_threshold must be a finite positive number, got {max_threshold}")
    if int(steps) < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    thresholds = np.linspace(0.0, float(max_threshold), int(steps))
    errors = _joint_errors(pred, target, root_index)  # (B, J)
    values = np.mean(errors[:, :, None] <= thresholds[None, None, :], axis=1)  # (B, T)
    return thresholds, values


def auc(
    pred, target, max_threshold: float = 0.2, steps: int = 41, root_index: RootIndex = 0
) -> np.ndarray:
    """Normalised area under the PCK curve over thresholds [0, max_threshold].

    The PCK curve is sampled at ``steps`` evenly spaced thresholds (default 41: every 5 mm
    over 0–200 mm for metre inputs), integrated with the trapezoid rule and divided by
    ``max_threshold``, so a perfect prediction scores 1 and the value lies in [0, 1].

    Returns:
        (B,) AUC values.
    """
    thresholds, values = pck_curve(pred, target, max_threshold, steps, root_index)
    dt = np.diff(thresholds)
    area = np.sum(0.5 * (values[:, 1:] + values[:, :-1]) * dt[None, :], axis=1)
    return area / float(max_threshold)


# --------------------------------------------------------------------------- MPERE


def mesh_edges(faces) -> np.ndarray:
    """Unique undirected edges (E, 2) of a triangle mesh with faces (F, 3), sorted rows."""
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] == 0:
        raise ValueError(f"faces must have shape (F, 3) with F >= 1, got {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        if not np.all(np.isfinite(f)) or not np.all(f == np.round(f)):
            raise ValueError("faces must contain integer vertex indices")
        f = f.astype(np.int64)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], axis=0)
    edges = np.sort(edges, axis=1)
    return np.unique(edges, axis=0)


def mpere(pred_verts, target_verts, faces) -> np.ndarray:
    """Mean per-edge relative (length) error, per sample; unitless.

    ``mean_e |len_pred(e) - len_gt(e)| / len_gt(e)`` over the unique edges of ``faces``.
    A mesh uniformly scaled by (1 + k) scores |k|; rigid motions score 0.

    Args:
        pred_verts, target_verts: (B, V, 3) vertices (same topology).
        faces: (F, 3) integer vertex indices.

    Returns:
        (B,) MPERE values.
    """
    p, t = _pair(pred_verts, target_verts, "pred_verts", "target_verts")
    edges = mesh_edges(faces)
    n = p.shape[1]
    if edges.min() < 0 or edges.max() >= n:
        raise ValueError(f"faces index vertices outside [0, {n}) for meshes with {n} vertices")
    len_p = np.linalg.norm(p[:, edges[:, 0]] - p[:, edges[:, 1]], axis=-1)
    len_t = np.linalg.norm(t[:, edges[:, 0]] - t[:, edges[:, 1]], axis=-1)
    if np.any(len_t <= 0):
        raise ValueError("target_verts has zero-length edges; MPERE is undefined for them")
    return np.mean(np.abs(len_p - len_t) / len_t, axis=-1)


# --------------------------------------------------------------------------- all errors of a fit


def score_against_truth(
    pred_vertices,
    pred_joints,
    truth_vertices,
    truth_joints,
    faces=None,
    root_index: int = 0,
) -> Dict[str, np.ndarray]:
    """Errors of B predicted bodies against their true bodies, per person, in millimetres.

    Args:
        pred_vertices, truth_vertices: (B, V, 3) mesh vertices in METRES (same topology), or
            both None when only joints are compared (no ``pve_mm``, ``pa_pve_mm``, ``mpere``).
        pred_joints, truth_joints: (B, J, 3) joints in METRES in the same frame (same joint
            set, e.g. the 24 SMPL joints, or the 15 HumanM3 joints regressed from the mesh).
        faces: optional (F, 3) faces of the meshes; when given with vertices, ``mpere`` is included.
        root_index: the root (pelvis) joint, index into J.

    Returns:
        dict of (B,) float64 arrays:
        ``mpjpe_mm`` (after subtracting each skeleton's root joint), ``pa_mpjpe_mm`` (after a
        per-person similarity Procrustes alignment), ``pelvis_error_mm`` (distance between the
        predicted and the true root joint, not aligned: the position/depth error),
        ``pck50`` (fraction of root-aligned joints within 50 mm), ``auc_0_200`` (normalised area
        under the PCK curve over 0–200 mm) and, with vertices, ``pve_mm`` (each mesh moved by its
        own skeleton's root joint) and ``pa_pve_mm``; with vertices and faces also ``mpere``
        (unitless).
    """
    pj, tj = _pair(pred_joints, truth_joints, "pred_joints", "truth_joints")
    root = int(root_index)
    if not -pj.shape[1] <= root < pj.shape[1]:
        raise ValueError(f"root_index {root} is out of range for joints with {pj.shape[1]} joints")
    result = {
        "mpjpe_mm": 1000.0 * mpjpe(pj, tj, root),
        "pa_mpjpe_mm": 1000.0 * pa_mpjpe(pj, tj),
        "pelvis_error_mm": 1000.0 * np.linalg.norm(pj[:, root] - tj[:, root], axis=-1),
        "pck50": pck(pj, tj, 0.05, root),
        "auc_0_200": auc(pj, tj, 0.2, 41, root),
    }
    if (pred_vertices is None) != (truth_vertices is None):
        raise ValueError("pred_vertices and truth_vertices must both be given or both be None")
    if pred_vertices is None:
        return result
    pv, tv = _pair(pred_vertices, truth_vertices, "pred_vertices", "truth_vertices")
    if pv.shape[0] != pj.shape[0]:
        raise ValueError(f"vertices and joints must have the same batch size, got {pv.shape[0]} and {pj.shape[0]}")
    result["pve_mm"] = 1000.0 * pve(pv, tv, pj[:, root], tj[:, root])
    result["pa_pve_mm"] = 1000.0 * pa_pve(pv, tv)
    if faces is not None:
        result["mpere"] = mpere(pv, tv, faces)
    return result
