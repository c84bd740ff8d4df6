"""Nearest neighbours and chamfer distances over padded, batched point sets.

Correspondences are found without gradients — with one KD-tree over the batch on the CPU
(pykdtree: about twice as fast to build and to search as scipy's cKDTree for these sizes), by
batched brute force on the GPU — and the distances to the found neighbours are then computed
with gradients. Both paths give the same neighbours as a brute-force search (ties aside) and the
same differentiable distances.

Padded layout: points (B, N, 3) with a mask (B, N) of valid entries; units are metres.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os

import numpy as np
import pykdtree
import torch
from pykdtree.kdtree import KDTree

_BRUTE_FORCE_CHUNK = 4096


def set_search_threads(count: int) -> bool:
    """Let the KD-tree searches use ``count`` threads (calling thread; default: ``$OMP_NUM_THREADS``, else
    all cores). pykdtree searches with its own OpenMP runtime, which ``torch.set_num_threads`` does not
    reach; ``smplify3d --threads`` sets both. Returns False when that runtime was not found (then the
    setting is left as it is)."""
    bundled = glob.glob(os.path.join(os.path.dirname(pykdtree.__file__), os.pardir, "pykdtree.libs", "libgomp*"))
    library = bundled[0] if bundled else ctypes.util.find_library("gomp")
    if not library:
        return False
    ctypes.CDLL(library).omp_set_num_threads(max(1, int(count)))
    return True


def _nearest_brute_force(query: torch.Tensor, ref: torch.Tensor, ref_mask: torch.Tensor) -> torch.Tensor:
    """(B,N,3), (B,M,3), (B,M) -> (B,N) index of the nearest valid ref point (0 where none)."""
    indices = []
    for start in range(0, query.shape[1], _BRUTE_FORCE_CHUNK):
        chunk = query[:, start:start + _BRUTE_FORCE_CHUNK]
        distance = torch.cdist(chunk, ref)
        distance = distance.masked_fill(~ref_mask[:, None, :], float("inf"))
        indices.append(distance.argmin(dim=2))
    return torch.cat(indices, dim=1) if indices else query.new_zeros(query.shape[:2], dtype=torch.long)


#: Each person's points are moved this far (plus twice their extent) from the previous person's along x
#: so that one KD-tree serves the whole batch; a query farther than this from its own person's points is
#: searched by brute force instead (m).
QUERY_REACH_M = 1000.0


class BatchedKDTree:
    """One KD-tree over the valid points of every person (B, M, 3), each person moved far from the others.

    Build it once for point sets that stay fixed (the LiDAR points during a fit) and query it every
    iteration: a whole batch is one build and one search, with no loop over persons. Person b's points
    are shifted by b · ``separation`` along x (separation = 2 · (their largest coordinate +
    :data:`QUERY_REACH_M`)), so a query shifted like its person finds that person's points first; a
    query whose nearest point belongs to another person (non-finite, or farther than the reach) is
    searched by brute force among its own person's points.
    """

    def __init__(self, ref: torch.Tensor, ref_mask: torch.Tensor) -> None:
        self.ref_np = ref.detach().cpu().numpy().astype(np.float64)
        self.mask_np = ref_mask.detach().cpu().numpy().astype(bool)
        self.has_points = self.mask_np.any(1)
        self.person_of, self.index_of = np.nonzero(self.mask_np)  # tree entry -> (person, point index)
        entries = self.ref_np[self.person_of, self.index_of]
        span = float(np.abs(entries).max()) if len(entries) else 0.0
        self.separation = 2.0 * (span + QUERY_REACH_M)
        self.tree = KDTree(self._shifted(entries, self.person_of), leafsize=16) if len(entries) else None

    def _shifted(self, points: np.ndarray, person: np.ndarray) -> np.ndarray:
        shifted = np.array(points, dtype=np.float64)
        shifted[:, 0] += person * self.separation
        return shifted

    def _search(self, query_np: np.ndarray, person: np.ndarray, rows: np.ndarray, k: int):
        """The k nearest own points of queries (person[i], rows[i]): (distances (S, k) m, point indices
        (S, k) into the person's M points, -1 where the person has fewer than k points)."""
        distance, found = self.tree.query(self._shifted(query_np[person, rows], person), k=k)
        distance, found = distance.reshape(len(rows), k), found.reshape(len(rows), k).astype(np.int64)
        entries = len(self.person_of)
        own = (found < entries) & (self.person_of[np.minimum(found, entries - 1)] == person[:, None])
        ids = np.where(own, self.index_of[np.minimum(found, entries - 1)], -1)
        distance = np.where(own, distance, np.inf)
        for i in np.flatnonzero(~own[:, 0]):  # beyond the reach or non-finite: this person's points only
            valid = np.flatnonzero(self.mask_np[person[i]])
            gaps = np.linalg.norm(self.ref_np[person[i], valid] - query_np[person[i], rows[i]], axis=1)
            gaps = np.nan_to_num(gaps, nan=np.inf)
            order = np.argsort(gaps, kind="stable")[:k]
            ids[i], distance[i] = -1, np.inf
            ids[i, :len(order)], distance[i, :len(order)] = valid[order], gaps[order]
        return distance, ids

    def _rows(self, query: torch.Tensor, query_mask: torch.Tensor | None):
        query_np = query.detach().cpu().numpy().astype(np.float64)
        mask = np.ones(query.shape[:2], dtype=bool) if query_mask is None else query_mask.detach().cpu().numpy().astype(bool)
        person, rows = np.nonzero(mask & self.has_points[:, None])
        return query_np, person, rows

    def query(self, query: torch.Tensor, query_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, 3) -> (B, N) index into each person's ref points (0 where it has none).

        Entries outside ``query_mask`` (B, N) are not searched and get 0.
        """
        out = np.zeros(query.shape[:2], dtype=np.int64)
        query_np, person, rows = self._rows(query, query_mask)
        if len(rows):
            _, ids = self._search(query_np, person, rows, 1)
            out[person, rows] = np.maximum(ids[:, 0], 0)
        return torch.from_numpy(out).to(query.device)

    def query_candidates(self, query: torch.Tensor, query_mask: torch.Tensor, count: int):
        """The ``count`` nearest ref points of the ``query_mask`` (B, N) entries of ``query`` (B, N, 3)
        and their distances and that of the next one, for those entries only.

        Returns (rows (S,) flat indices b * N + n of the searched entries; ids (S, count) into each
        person's ref points, nearest first; distances (S, count + 1) m of those and of the next
        nearest). Where a person has fewer points the missing ids repeat the nearest one and their
        distances are infinite; entries of persons without points are not returned.
        """
        device = query.device
        query_np, person, rows = self._rows(query, query_mask)
        if not len(rows):
            return (torch.zeros(0, dtype=torch.long, device=device), torch.zeros(0, count, dtype=torch.long, device=device),
                    torch.zeros(0, count + 1, dtype=query.dtype, device=device))
        distance, ids = self._search(query_np, person, rows, count + 1)
        ids = np.where(ids < 0, ids[:, :1], ids)
        flat = person * query.shape[1] + rows
        return (torch.from_numpy(flat).to(device), torch.from_numpy(ids[:, :count]).to(device),
                torch.from_numpy(distance).to(device, query.dtype))


class FixedPointsNearest:
    """Nearest neighbours in fixed points ``ref`` (B, M, 3) for query points that move a little between calls.

    Built once per fit over the LiDAR points and queried at every ICP iteration and optimizer step with
    the moving surface. Each query point keeps its ``candidates`` nearest ref points from its last
    search (their positions, stored as (3, K, B·N) planes so that a call is a few elementwise passes) and
    the distance d of the next ref point. While the point has moved by less than d minus its distance
    to the nearest candidate, no other ref point can be nearer (triangle inequality), so the nearest
    candidate is the exact answer (ties aside); only the other points are searched again, with the
    KD-tree built once over ``ref``. Same interface as :class:`BatchedKDTree`
    (``query(query (B, N, 3), query_mask (B, N)) -> (B, N)``).
    """

    def __init__(self, ref: torch.Tensor, ref_mask: torch.Tensor, candidates: int = 4) -> None:
        self.ref = ref.detach()
        self.tree = BatchedKDTree(ref, ref_mask)
        self.count = int(candidates)
        self.searched_at = None  # (B, N, 3) where each query point was last searched
        self.candidates = None  # (B, N, K) its nearest ref points then
        self.candidate_positions = None  # (3, K, B * N) where they are, m
        self.bound = None  # (B, N) the distance of the next ref point then, m
        self.searches = 0  # query points searched so far (for benchmarks)

    def _reset(self, query: torch.Tensor) -> None:
        shape = query.shape[:2]
        self.searched_at = torch.full_like(query, float("nan"))
        self.candidates = torch.zeros(shape + (self.count,), dtype=torch.long, device=query.device)
        self.candidate_positions = torch.zeros(3, self.count, shape[0] * shape[1], dtype=query.dtype, device=query.device)
        self.bound = torch.zeros(shape, dtype=query.dtype, device=query.device)

    def _search(self, query: torch.Tensor, stale: torch.Tensor) -> None:
        """Search the query points ``stale`` (B, N) again and keep what they found."""
        rows, ids, distances = self.tree.query_candidates(query, stale, self.count)
        self.candidates.view(-1, self.count).index_copy_(0, rows, ids)
        person_rows = (rows // query.shape[1] * self.ref.shape[1])[:, None]
        positions = self.ref.reshape(-1, 3)[ids + person_rows].permute(2, 1, 0)  # (3, K, S)
        self.candidate_positions.index_copy_(2, rows, positions.to(query.dtype))
        self.bound.view(-1).index_copy_(0, rows, distances[:, self.count])
        self.searched_at.view(-1, 3).index_copy_(0, rows, query.reshape(-1, 3).index_select(0, rows))
        self.searches += int(rows.shape[0])

    def query(self, query: torch.Tensor, query_mask: torch.Tensor | None = None) -> torch.Tensor:
        query = query.detach()
        if query_mask is None:
            query_mask = torch.ones(query.shape[:2], dtype=torch.bool, device=query.device)
        if self.searched_at is None or self.searched_at.shape != query.shape:
            self._reset(query)
        planes = query.reshape(-1, 3).T  # (3, B * N)
        squared = (self.candidate_positions[0] - planes[0]).square_()
        squared += (self.candidate_positions[1] - planes[1]).square_()
        squared += (self.candidate_positions[2] - planes[2]).square_()
        squared, nearest = squared.min(0)
        squared, nearest = squared.view(query.shape[:2]), nearest.view(query.shape[:2])
        margin = (self.bound - (query - self.searched_at).norm(dim=-1)).clamp(min=0.0)
        stale = query_mask & ~(squared < margin.square())  # never searched: the margin is NaN
        if bool(stale.any()):
            self._search(query, stale)
            nearest.masked_fill_(stale, 0)
        found = torch.gather(self.candidates, 2, nearest[..., None])[..., 0]
        return found.masked_fill_(~query_mask, 0)


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


def _mean_weights(mask: torch.Tensor, usable: torch.Tensor) -> torch.Tensor:
    """(B, N) weights of a per-person mean over the ``mask`` (B, N) entries, 0 for persons not ``usable`` (B,)."""
    weights = mask.to(usable.dtype)
    return weights * (usable / weights.sum(1).clamp(min=1.0))[:, None]


class _ChamferTerms(torch.autograd.Function):
    """Σ_i w_i ‖s_i − p_{a(i)}‖² + Σ_j v_j ‖p_j − s_{b(j)}‖² per person, for found correspondences a, b.

    forward(surface (B, N, 3), points (B, M, 3), to_points (B, N), to_surface (B, M), surface_weights
    (B, N), points_weights (B, M)) -> (B,). One fused forward and a hand-written backward (the
    offsets scattered back onto the matched entries) instead of a dozen autograd nodes per step.
    """

    @staticmethod
    def forward(ctx, surface, points, to_points, to_surface, surface_weights, points_weights):
        surface_offsets = surface - torch.gather(points, 1, to_points[..., None].expand(-1, -1, 3))
        points_offsets = points - torch.gather(surface, 1, to_surface[..., None].expand(-1, -1, 3))
        weighted_surface = surface_weights[..., None] * surface_offsets
        weighted_points = points_weights[..., None] * points_offsets
        ctx.save_for_backward(weighted_surface, weighted_points, to_points, to_surface)
        return (weighted_surface * surface_offsets).sum((1, 2)) + (weighted_points * points_offsets).sum((1, 2))

    @staticmethod
    def backward(ctx, grad):
        weighted_surface, weighted_points, to_points, to_surface = ctx.saved_tensors
        scale = 2.0 * grad[:, None, None]
        grad_surface = grad_points = None
        if ctx.needs_input_grad[0]:
            grad_surface = (scale * weighted_surface).scatter_add_(
                1, to_surface[..., None].expand(-1, -1, 3), -scale * weighted_points)
        if ctx.needs_input_grad[1]:
            grad_points = (scale * weighted_points).scatter_add_(
                1, to_points[..., None].expand(-1, -1, 3), -scale * weighted_surface)
        return grad_surface, grad_points, None, None, None, None


def chamfer_distance(
    surface: torch.Tensor,
    surface_mask: torch.Tensor,
    points: torch.Tensor,
    points_mask: torch.Tensor,
    method: str = "auto",
    points_index: "BatchedKDTree | FixedPointsNearest | None" = None,
    surface_index: "FixedPointsNearest | None" = None,
    surface_shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bidirectional chamfer distance per person (m²).

    mean over valid surface points of the squared distance to the nearest valid LiDAR point,
    plus the same from the LiDAR points to the surface. surface: (B, N, 3) with mask (B, N);
    points: (B, M, 3) with mask (B, M). Persons without valid points on either side get 0.
    Differentiable with respect to both point sets. ``points_index``: a prebuilt
    :class:`BatchedKDTree` or :class:`FixedPointsNearest` of ``points`` (CPU), reused across calls
    when the points stay fixed. ``surface_index``: for a surface that only moves by a translation,
    a :class:`FixedPointsNearest` over ``surface − surface_shift`` (surface_shift (B, 1, 3) m, the
    translation), so that the points' nearest vertices are found without a tree over the moving surface.
    """
    use_kdtree = method == "kdtree" or (method == "auto" and not surface.is_cuda)
    with torch.no_grad():
        if use_kdtree:
            index = points_index if points_index is not None else BatchedKDTree(points, points_mask)
            to_points = index.query(surface, surface_mask)
            if surface_index is not None:
                shift = 0.0 if surface_shift is None else surface_shift.detach()
                to_surface = surface_index.query(points - shift, points_mask)
            else:
                to_surface = BatchedKDTree(surface, surface_mask).query(points, points_mask)
        else:
            to_points = nearest_indices(surface, points, points_mask, method)
            to_surface = nearest_indices(points, surface, surface_mask, method)
    usable = (surface_mask.any(1) & points_mask.any(1)).to(surface.dtype)
    return _ChamferTerms.apply(surface, points, to_points, to_surface, _mean_weights(surface_mask, usable),
                               _mean_weights(points_mask, usable))


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
