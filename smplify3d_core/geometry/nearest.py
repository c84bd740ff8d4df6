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
    """One KD-tree over the valid points of all persons (B, M, 3), queried per person.

    Each person's points are shifted by their own large offset along x, so one tree build and
    one query serve the whole batch, and a query never reaches another person's points. Build it
    once for point sets that stay fixed (the LiDAR points during a fit).
    """

    def __init__(self, ref: torch.Tensor, ref_mask: torch.Tensor) -> None:
        self._ref = ref.detach().cpu().numpy().astype(np.float64)
        self._mask = ref_mask.detach().cpu().numpy().astype(bool)
        self.has_points = self._mask.any(1)
        self._build(float(np.abs(self._ref[self._mask]).max(initial=0.0)))

    def _build(self, reach: float) -> None:
        person, self.index = np.nonzero(self._mask)
        # offsets far larger than any coordinate keep persons apart
        self.spacing = 4.0 * reach + 10.0
        shifted = self._ref[person, self.index]
        shifted[:, 0] += person * self.spacing
        self.tree = cKDTree(shifted) if len(self.index) else None

    def query(self, query: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) -> (B, N) index into the ref points of the same person (0 where it has none)."""
        batch, count = query.shape[:2]
        out = np.zeros((batch, count), dtype=np.int64)
        if self.tree is not None and count:
            query_np = query.detach().cpu().numpy().astype(np.float64)
            reach = float(np.abs(query_np).max(initial=0.0))
            if 4.0 * reach + 10.0 > self.spacing:
                self._build(max(reach, float(np.abs(self._ref[self._mask]).max(initial=0.0))))
            shifted = query_np.copy()
            shifted[..., 0] += np.arange(batch)[:, None] * self.spacing
            _, nearest = self.tree.query(shifted.reshape(-1, 3))
            out = self.index[nearest].reshape(batch, count)
            out[~self.has_points] = 0
        return torch.from_numpy(out).to(query.device)

@torch.no_grad()
def nearest_indices(query: torch.Tensor, ref: torch.Tensor, ref_mask: torch.Tensor | None = None, method: str = "auto") -> torch.Tensor:
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
    if points_index is not None and not surface.is_cuda and method != "brute":
        with torch.no_grad():
            to_points = points_index.query(surface)
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
