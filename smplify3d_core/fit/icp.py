"""Batched rigid ICP (torch) and its application to SMPL parameters.

Aligns each person's visible mesh surface to that person's LiDAR points. Padded layout:
(B, N, 3) point sets with (B, N) bool masks; metres.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from smplify3d_core.geometry.nearest import BatchedKDTree, FixedPointsNearest, nearest_indices
from smplify3d_core.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle


@dataclass
class RigidTransform:
    """x -> scale * rotation @ x + translation, per person.

    rotation: (B, 3, 3); translation: (B, 3) metres; scale: (B,); rmse: (B,) metres of the
    final correspondences; iterations: how many ICP steps ran; person_iterations: (B,) how many
    updates each person's transform got before it converged (None when not tracked).
    """

    rotation: torch.Tensor
    translation: torch.Tensor
    scale: torch.Tensor
    rmse: torch.Tensor
    iterations: int
    person_iterations: Optional[torch.Tensor] = None

    def apply(self, points: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) -> (B, N, 3)."""
        return self.scale[:, None, None] * points @ self.rotation.transpose(1, 2) + self.translation[:, None]


def _masked_bbox_centre(points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    big = torch.finfo(points.dtype).max
    low = points.masked_fill(~mask[..., None], big).amin(1)
    high = points.masked_fill(~mask[..., None], -big).amax(1)
    centre = (low + high) / 2
    return torch.where(mask.any(1, keepdim=True), centre, torch.zeros_like(centre))


def weighted_similarity(source: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, with_rotation: bool = True,
                        with_scale: bool = False):
    """Least-squares (scale, rotation, translation) taking source onto target (Umeyama/Kabsch).

    source, target: (B, N, 3) paired points; weights: (B, N) >= 0. Persons whose weights sum
    to zero get the identity. Returns scale (B,), rotation (B, 3, 3), translation (B, 3).
    """
    w = weights.to(source.dtype)
    total = w.sum(1).clamp(min=1e-12)
    mu_s = (w[..., None] * source).sum(1) / total[:, None]
    mu_t = (w[..., None] * target).sum(1) / total[:, None]
    s0 = source - mu_s[:, None]
    t0 = target - mu_t[:, None]
    eye = torch.eye(3, dtype=source.dtype, device=source.device).expand(source.shape[0], 3, 3)
    if with_rotation:
        cov = torch.einsum("bni,bnj->bij", w[..., None] * t0, s0) / total[:, None, None]
        U, S, Vh = torch.linalg.svd(cov)
        d = torch.sign(torch.linalg.det(U @ Vh))
        d = torch.where(d == 0, torch.ones_like(d), d)
        D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
        rotation = U @ D @ Vh
        trace_sd = (S * torch.diagonal(D, dim1=-2, dim2=-1)).sum(-1)
    else:
        rotation = eye.clone()
        trace_sd = ((w[..., None] * t0 * s0).sum((1, 2))) / total
    if with_scale:
        var_s = (w * (s0 ** 2).sum(-1)).sum(1) / total
        scale = trace_sd / var_s.clamp(min=1e-12)
    else:
        scale = torch.ones_like(total)
    translation = mu_t - scale[:, None] * (rotation @ mu_s[..., None])[..., 0]
    empty = weights.sum(1) <= 0
    rotation = torch.where(empty[:, None, None], eye, rotation)
    translation = torch.where(empty[:, None], torch.zeros_like(translation), translation)
    scale = torch.where(empty, torch.ones_like(scale), scale)
    return scale, rotation, translation


@torch.no_grad()
def rigid_icp(
    source: torch.Tensor,
    source_mask: torch.Tensor,
    target: torch.Tensor,
    target_mask: torch.Tensor,
    iterations: int = 100,
    with_rotation: bool = True,
    with_scale: bool = False,
    max_distance: Optional[float] = None,
    tolerance: float = 1e-4,
    init_from_bbox: bool = True,
    target_index: "BatchedKDTree | FixedPointsNearest | None" = None,
) -> RigidTransform:
    """Point-to-point ICP of ``source`` onto ``target`` for every person at once.

    source: (B, N, 3) with mask (B, N); target: (B, M, 3) with mask (B, M). Initialised by
    the difference of the bounding-box centres (``init_from_bbox``). Correspondences farther
    than ``max_distance`` metres are ignored. A person whose RMSE changes by less than
    ``tolerance`` metres between two iterations has converged: it keeps its transform from then on
    (so that its result does not depend on the others in the batch) and is no longer searched;
    the loop stops when every person has. Only the masked source points are searched. Persons
    with no valid source or target points keep the identity. ``target_index``: a nearest-neighbour
    index over ``target`` the caller keeps (e.g. a :class:`FixedPointsNearest` that the fit's later
    stages go on using); by default a KD-tree is built (CPU) or brute force is used (CUDA).
    """
    batch = source.shape[0]
    dtype, device = source.dtype, source.device
    rotation = torch.eye(3, dtype=dtype, device=device).repeat(batch, 1, 1)
    scale = torch.ones(batch, dtype=dtype, device=device)
    usable = source_mask.any(1) & target_mask.any(1)
    if init_from_bbox:
        translation = (_masked_bbox_centre(target, target_mask) - _masked_bbox_centre(source, source_mask)) * usable[:, None]
    else:
        translation = torch.zeros(batch, 3, dtype=dtype, device=device)
    transform = RigidTransform(rotation, translation, scale, torch.zeros(batch, dtype=dtype, device=device), 0)
    previous = torch.full((batch,), float("inf"), dtype=dtype, device=device)
    converged = torch.zeros(batch, dtype=torch.bool, device=device)
    updates = torch.zeros(batch, dtype=torch.long, device=device)
    index = target_index
    if index is None and not source.is_cuda:
        index = BatchedKDTree(target, target_mask)

    def nearest(points, rows):
        return nearest_indices(points, target, target_mask) if index is None else index.query(points, rows)

    steps = 0
    for steps in range(1, iterations + 1):
        moved = transform.apply(source)
        match = nearest(moved, source_mask & ~converged[:, None])
        matched = torch.gather(target, 1, match[..., None].expand(-1, -1, 3))
        distance = (moved - matched).norm(dim=-1)
        weights = source_mask & target_mask.any(1, keepdim=True)
        if max_distance is not None:
            weights = weights & (distance <= max_distance)
        rmse = torch.sqrt((distance ** 2 * weights).sum(1) / weights.sum(1).clamp(min=1))
        if steps > 1:
            converged = converged | ((previous - rmse).abs() < tolerance)
            if bool(converged.all()):
                break
        previous = rmse
        new_scale, new_rotation, new_translation = weighted_similarity(source, matched, weights.to(dtype), with_rotation,
                                                                       with_scale)
        keep = ~(weights.any(1)) | converged
        updates += (~keep).long()
        transform = RigidTransform(
            torch.where(keep[:, None, None], transform.rotation, new_rotation),
            torch.where(keep[:, None], transform.translation, new_translation),
            torch.where(keep, transform.scale, new_scale),
            rmse,
            steps,
        )
    moved = transform.apply(source)
    match = nearest(moved, source_mask)
    distance = (moved - torch.gather(target, 1, match[..., None].expand(-1, -1, 3))).norm(dim=-1)
    weights = source_mask & usable[:, None]
    transform.rmse = torch.sqrt((distance ** 2 * weights).sum(1) / weights.sum(1).clamp(min=1))
    transform.iterations = steps
    transform.person_iterations = updates
    return transform


def apply_rigid_to_smpl(
    global_orient: torch.Tensor,
    transl: torch.Tensor,
    root_rest: torch.Tensor,
    rotation: torch.Tensor,
    translation: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move SMPL bodies by a rigid transform x -> R x + t.

    SMPL places a vertex at R_go (v - p) + p + transl, where p (B, 3) is the rest-pose root
    joint of the shaped template (``root_rest``). Composing with (R, t) gives the root
    orientation R R_go (rotation about the pelvis) and the translation R (p + transl) + t − p.
    global_orient, transl: (B, 3); rotation (B, 3, 3); translation (B, 3).
    Returns the new (global_orient, transl).
    """
    new_orient = matrix_to_axis_angle(rotation @ axis_angle_to_matrix(global_orient))
    new_transl = (rotation @ (root_rest + transl)[..., None])[..., 0] + translation - root_rest
    return new_orient, new_transl
