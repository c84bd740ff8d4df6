"""Nearest neighbours and chamfer distances over padded, batched point sets.

Correspondences are found without gradients — with a KD-tree per person on the CPU, by
batched brute force on the GPU — and the distances to the found neighbours are then
computed with gradients. Both paths give the same neighbours as a brute-force search
(ties aside) and the same differentiable distances.

Padded layout: points (B, N, 3) with a mask (B, N) of valid entries; units are metres.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

_BRUTE_FORCE_CHUNK = 4096


def _nearest_brute_force(query: torch.Tensor, ref: torch.Tensor, ref_mask: torch.Tensor) -> torch.Tensor:
    """(B,N,3), (B,M,3), (B,M) -> (B,N) index of the nearest valid ref point (0 where none)."""
    indices = []
    for start in range(0, query.shape[1], _BRUTE_FORCE_CHUNK):
        chunk = query[:, start:start + _BRUTE_FORCE_CHUNK]
        distance = torch.cdist(chunk, ref)
        distance = distance.masked_fill(~ref_mask[:, None, :], float("inf"))
        indices.append(distance.argmin(dim=2))
    return torch.cat(indices, dim=1) if indices else query.new_zeros(query.shape[:2], dtype=torch.long)


class BatchedKDTree:
    """KD-trees over the valid points of each person (B, M, 3), queried person by person.

    Build it once for point sets that stay fixed (the LiDAR points during a fit) and query it
    every iteration.
    """

    def __init__(self, ref: torch.Tensor, ref_mask: torch.Tensor) -> None:
        ref_np = ref.detach().cpu().numpy()
        mask_np = ref_mask.detach().cpu().numpy().astype(bool)
        self.has_points = mask_np.any(1)
        self.valid_ids = [np.flatnonzero(mask_np[b]) for b in range(ref.shape[0])]
        self.trees = [cKDTree(ref_np[b, ids]) if len(ids) else None for b, ids in enumerate(self.valid_ids)]

    def query(self, query: torch.Tensor, query_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, 3) -> (B, N) index into each person's ref points (0 where it has none).

        Entries outside ``query_mask`` (B, N) are not searched and get 0.
        """
        query_np = query.detach().cpu().numpy()
        mask_np = None if query_mask is None else query_mask.detach().cpu().numpy().astype(bool)
        out = np.zeros(query.shape[:2], dtype=np.int64)
        for b, tree in enumerate(self.trees):
            if tree is None:
                continue
            if mask_np is None:
                _, nearest = tree.query(query_np[b])
                out[b] = self.valid_ids[b][nearest]
            else:
                rows = np.flatnonzero(mask_np[b])
                if len(rows):
                    _, nearest = tree.query(query_np[b, rows])
                    out[b, rows] = self.valid_ids[b][nearest]
        return torch.from_numpy(out).to(query.device)

@torch.no_grad()
def nearest_indices(query: torch.Tensor, ref: torch.Tensor, ref_mask: torch.Tensor | None = None,
                    method: str = "auto") -> torch.Tensor:
    """Index into ``ref`` of each query point's nearest valid neighbour.

    query: (B, N, 3); ref: (B, M, 3); ref_mask: (B, M) bool (all valid when None).
    method: "kdtree", "brute" or "auto" (KD-tree on CPU, brute force on CUDA).
    Returns (B, N) int64; 0 for persons without any valid ref point.
    """
    if ref_mask is None:
        ref_mask = torch.ones(ref.shape[:2], dtype=torch.bool, device=ref.device)
    if method == "auto":
        method = "brute" if query.is_cuda else "kdtree"
    if method == "brute":
        return _nearest_brute_force(query, ref, ref_mask)
    if method == "kdtree":
        return BatchedKDTree(ref, ref_mask).query(query)
    raise ValueError(f"unknown nearest-neighbour method {method!r}; use 'auto', 'kdtree' or 'brute'")


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(values.dtype)
    return (values * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def chamfer_distance(
    surface: torch.Tensor,
    surface_mask: torch.Tensor,
    points: torch.Tensor,
    points_mask: torch.Tensor,
    method: str = "auto",
    points_index: "BatchedKDTree | None" = None,
) -> torch.Tensor:
    """Bidirectional chamfer distance per person (m²).

    mean over valid surface points of the squared distance to the nearest valid LiDAR point,
    plus the same from the LiDAR points to the surface. surface: (B, N, 3) with mask (B, N);
    points: (B, M, 3) with mask (B, M). Persons without valid points on either side get 0.
    Differentiable with respect to both point sets. ``points_index``: a prebuilt
    :class:`BatchedKDTree` of ``points`` (CPU), reused across calls when the points stay fixed.
    """
    use_kdtree = method == "kdtree" or (method == "auto" and not surface.is_cuda)
    with torch.no_grad():
        if use_kdtree:
            index = points_index if points_index is not None else BatchedKDTree(points, points_mask)
            to_points = index.query(surface, surface_mask)
            to_surface = BatchedKDTree(surface, surface_mask).query(points, points_mask)
        else:
            to_points = nearest_indices(surface, points, points_mask, method)
            to_surface = nearest_indices(points, surface, surface_mask, method)
    gathered_points = torch.gather(points, 1, to_points[..., None].expand(-1, -1, 3))
    gathered_surface = torch.gather(surface, 1, to_surface[..., None].expand(-1, -1, 3))
    forward = ((surface - gathered_points) ** 2).sum(-1)
    backward = ((points - gathered_surface) ** 2).sum(-1)
    usable = (surface_mask.any(1) & points_mask.any(1)).to(surface.dtype)
    return (_masked_mean(forward, surface_mask) + _masked_mean(backward, points_mask)) * usable


def pad_point_sets(point_sets: list, device="cpu", dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (N_i, 3) arrays -> padded (B, max N_i, 3) tensor and (B, max N_i) bool mask.

    Non-finite points are dropped (masked out).
    """
    longest = max([len(p) for p in point_sets] + [1])
    padded = torch.zeros(len(point_sets), longest, 3, dtype=dtype, device=device)
    mask = torch.zeros(len(point_sets), longest, dtype=torch.bool, device=device)
    for b, points in enumerate(point_sets):
        points = torch.as_tensor(np.asarray(points, dtype=np.float64).reshape(-1, 3), dtype=dtype, device=device)
        if len(points):
            padded[b, : len(points)] = torch.nan_to_num(points)
            mask[b, : len(points)] = torch.isfinite(points).all(1)
    return padded, mask
