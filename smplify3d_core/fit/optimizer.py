"""The three-stage SMPLify-3D optimizer (the research method, with its known slips fixed), all
persons of a frame in one batch.

Stages (Adam, lr from the config, betas (0.9, 0.999)):
  1. scale — betas; hip-aligned reprojection + shape prior.
  2. mesh — body_pose, betas, global_orient; hip-aligned reprojection + pose, angle and shape
     priors + occluded-part deviation + 3D chamfer to the LiDAR points.
  3. image alignment — translation; reprojection + 3D chamfer.
before which the visibility filter runs and ICP rigidly aligns the visible surface to the points.

The optimizer steps skin only the vertices their losses read (``subset_skinning``): stage 1 none,
stage 2 the uniform surface subset of the chamfer term; the COCO joints (a fixed linear combination
of posed vertices) come from the bones' transforms through the regressor's per-bone sums
(:meth:`~smplify3d_core.body.model.SMPLBody.skinned_regressor`); the whole mesh is posed for ICP,
for the visible-surface test when it needs normals (every ``visible_surface_refresh_steps`` stage-2
steps) and once for the output. Skinning is per vertex,
so the result is that of skinning the whole mesh at every step. Stage 3 only translates the body posed
before it, so the output mesh is that body moved (no further body pass).

A person whose loss turns non-finite keeps its last finite parameters and is flagged
``non_finite_loss``; the others go on unaffected.

A *warm* fit (a tracked person whose initial values are its track's prediction) runs the reduced
schedule of the preset's ``tracking`` section instead: ICP only for persons whose points lie more
than ``icp_residual_m`` from the predicted surface, no stage 1, fewer stage-2 steps
(``settled_stage2_iterations`` when every person of the batch has a settled track shape — its betas
are held, so the steps only refine a pose that starts near the answer — else ``stage2_iterations``)
and stage-3 steps, a coarser surface for the chamfer terms (the first ``surface_vertices`` farthest-point samples of the
uniform subset, :meth:`~smplify3d_core.body.tables.BodyTables.coarse_subset`: a warm fit starts near
the answer, so a sparser but still even sample of the surface steers it as well, at a fraction of the
skinning and neighbour-search cost), and temporal terms that keep the pose and the translation near
the prediction:
``temporal_pose_weight² · Σ (θ − θ_pred)²`` (rad²) in stage 2 and
``temporal_transl_weight² · ‖t − t_pred‖²`` (m²) in stage 3. Persons whose track shape is settled
keep their betas fixed.

:meth:`SMPLify3D.fit_shared_shape` settles a track's shape: one betas vector fitted to the
keypoints of the track's kept frames together, each frame's pose and depth held, the shape prior
counted once (the ``shape_fit_*`` keys of the ``tracking`` section).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from smplify3d_core.body.model import BodyOutput, SMPLBody, VertexSubset
from smplify3d_core.body.priors import MaxMixturePosePrior, angle_prior, shape_prior
from smplify3d_core.body.tables import body_tables
from smplify3d_core.fit.config import FitConfig
from smplify3d_core.fit.icp import apply_rigid_to_smpl, rigid_icp
from smplify3d_core.fit.inputs import FitInputs
from smplify3d_core.fit.losses import mean_reprojection_error, occluded_part_deviation, reprojection_loss
from smplify3d_core.fit.visibility import VisibleSurface, all_visible, keypoint_visibility, occluded_joint_weights
from smplify3d_core.fit.verdict import VerdictMeasures
from smplify3d_core.geometry.nearest import FixedPointsNearest, chamfer_distance, nearest_indices


@dataclass
class FitResult:
    """Fitted persons (camera frame), tensors on the CPU.

    global_orient (B,3), body_pose (B,69), betas (B,10), transl (B,3); vertices (B,V,3) and
    joints (B,24,3) in metres; reprojection_error_px (B,) mean over image-visible keypoints;
    chamfer_m2 (B,) final chamfer distance (0 when the 3D term was not used);
    lidar_point_count (B,); visible_parts: per person, the LiDAR-visible part names;
    flags: per person, problems met; fitted (B,): a body was fitted (usable inputs, finite
    vertices); valid (B,): fitted and, once :func:`~smplify3d_core.fit.verdict.apply_verdict` has
    judged it (``fit_frame`` does), believable — the optimizer alone sets it equal to ``fitted``;
    stage_seconds: wall time per step; stage_losses: per stage, (B,) loss before and after;
    verdict: the :class:`~smplify3d_core.fit.verdict.VerdictMeasures` (None until judged).
    """

    global_orient: torch.Tensor
    body_pose: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor
    vertices: torch.Tensor
    joints: torch.Tensor
    reprojection_error_px: torch.Tensor
    chamfer_m2: torch.Tensor
    lidar_point_count: torch.Tensor
    visible_parts: list
    flags: list
    valid: torch.Tensor
    fitted: torch.Tensor
    stage_seconds: dict = field(default_factory=dict)
    stage_losses: dict = field(default_factory=dict)
    verdict: Optional[VerdictMeasures] = None


@dataclass
class WarmStart:
    """What a warm fit (a tracked person) is kept near: its track's prediction, batched like the inputs.

    body_pose: (B, 69) rad; transl: (B, 3) m, camera frame; shape_fixed: (B,) bool, persons whose
    betas are held (their track's shape is settled); shape_prior_scale: (B,) factor on the stage-2
    shape prior — 1 / (1 + the frames already fused into the track's shape), so that over a track
    the prior counts once rather than once per frame (sequential MAP of one shape); anchor_pose:
    (B, 69) rad, or None: what the joints of body parts the image does not show are kept near (the
    occluded-part deviation term; default the initial pose).
    """

    body_pose: torch.Tensor
    transl: torch.Tensor
    shape_fixed: torch.Tensor
    shape_prior_scale: torch.Tensor
    anchor_pose: Optional[torch.Tensor] = None


@dataclass
class _SkinnedVertices:
    """What one optimizer step skins: ``vertices`` (None: the whole mesh, whose COCO joints are regressed
    from the posed vertices; else only these, the joints coming from the bones' transforms) and where
    the uniform surface subset lies among them ((M,) index into the whole mesh, ``slice(None)`` when
    the skinned vertices are the subset itself, None when they do not hold it)."""

    vertices: Optional[VertexSubset]
    surface_index: "Optional[torch.Tensor | slice]"


class FitCancelled(Exception):
    """Raised by :meth:`SMPLify3D.fit` between two optimizer steps when its ``should_stop`` says so."""


class SMPLify3D:
    """Fits SMPL bodies to keypoints and LiDAR points.

    body: the SMPL model (moved to ``device``); config: :class:`FitConfig`;
    pose_prior: the GMM prior (:class:`MaxMixturePosePrior`).
    """

    def __init__(self, body: SMPLBody, config: FitConfig, pose_prior: MaxMixturePosePrior, device="cpu", seed: int = 0) -> None:
        self.device = torch.device(device)
        self.body = body.to(self.device)
        self.config = config
        self.pose_prior = pose_prior.to(self.device, body.v_template.dtype)
        self.seed = seed
        tables = body_tables(body.data)
        dtype = body.v_template.dtype
        self.coco_regressor = torch.as_tensor(tables.coco17_regressor, dtype=dtype, device=self.device)
        self.coco_skinned = self.body.skinned_regressor(tables.coco17_regressor)
        self.surface = VisibleSurface(tables, body.faces, device=self.device)
        # what the optimizer steps skin: stage 1 no vertex, stage 2 the surface subset (in its own order)
        self.tables = tables
        subset_ids = tables.uniform_subset
        self._coarse: dict = {}  # vertex count -> (what a warm stage-2 step skins, its columns of the surface mask)
        self.stage1_vertices = _SkinnedVertices(self.body.vertex_subset(subset_ids[:0]), None)
        self.stage2_vertices = _SkinnedVertices(self.body.vertex_subset(subset_ids), slice(None))
        self.warm_up_seconds: Optional[float] = None  # set by the first fit (see :meth:`warm_up`)

    def warm_up(self) -> float:
        """Run every kind of step once on a dummy person (autograd, Adam, the body passes, the priors,
        the neighbour search) so that one-off start-up costs of torch are not booked into the first
        frame's stages; :meth:`fit` calls it once. Returns the seconds it took."""
        start = time.perf_counter()
        dtype = self.body.v_template.dtype
        pose = torch.zeros(1, 69, dtype=dtype, device=self.device, requires_grad=True)
        params = {"global_orient": torch.zeros(1, 3, dtype=dtype, device=self.device), "body_pose": pose,
                  "betas": torch.zeros(1, self.body.num_betas, dtype=dtype, device=self.device),
                  "transl": torch.tensor([[0.0, 0.0, 5.0]], dtype=dtype, device=self.device)}
        optimizer = torch.optim.Adam([pose], lr=self.config.learning_rate)
        for skinned in (self.stage1_vertices, self.stage2_vertices):
            coco, surface = self._posed(params, skinned)
            loss = coco.square().sum() + self.pose_prior(pose).sum() + angle_prior(pose).sum()
            if surface is not None:
                index = self._nearest_index(surface.detach()[:, :10], torch.ones(1, 10, dtype=torch.bool, device=self.device))
                mask = torch.ones(surface.shape[:2], dtype=torch.bool, device=self.device)
                loss = loss + chamfer_distance(surface, mask, surface.detach()[:, :10], mask[:, :10],
                                               method=self.config.nearest_neighbours, points_index=index).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            self.body(**{k: v.detach() for k, v in params.items()})
        self.warm_up_seconds = time.perf_counter() - start
        return self.warm_up_seconds

    # -- helpers -------------------------------------------------------------------------
    def _coco_joints(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, 17, 3) COCO joints of the posed whole mesh ``vertices`` (B, 6890, 3)."""
        return torch.einsum("jv,bvc->bjc", self.coco_regressor, vertices)

    def _warm_surface(self, count: int):
        """What a warm stage-2 step skins when it reads ``count`` surface vertices, and where they lie among the
        uniform subset's columns of the visible-surface mask ((count,) index, or ``slice(None)`` for all)."""
        if count >= len(self.surface.subset):
            return self.stage2_vertices, slice(None)
        if count not in self._coarse:
            ids = self.tables.coarse_subset(count)
            columns = torch.as_tensor(np.searchsorted(self.tables.uniform_subset, ids), device=self.device)
            self._coarse[count] = (_SkinnedVertices(self.body.vertex_subset(ids), slice(None)), columns)
        return self._coarse[count]

    def _posed(self, params: dict, skinned: "_SkinnedVertices"):
        """One body pass over ``skinned``'s vertices (the whole mesh when ``subset_skinning`` is off).

        Returns (COCO joints (B, 17, 3), the uniform surface subset (B, M, 3) or None when ``skinned``
        does not cover it), metres, camera frame."""
        if not self.config.subset_skinning and skinned.vertices is not None:  # the whole mesh, read at the same ids
            ids = skinned.vertices.vertex_ids
            skinned = _SkinnedVertices(None, None if skinned.surface_index is None else ids[skinned.surface_index])
        if skinned.vertices is None:
            out = self.body(params["global_orient"], params["body_pose"], params["betas"], params["transl"])
            coco = self._coco_joints(out.vertices)
        else:
            out = self.body(params["global_orient"], params["body_pose"], params["betas"], params["transl"],
                            vertices=skinned.vertices, regressor=self.coco_skinned)
            coco = out.regressed
        surface = None if skinned.surface_index is None else out.vertices[:, skinned.surface_index]
        return coco, surface

    @torch.no_grad()
    def _coco_affine_in_betas(self, params: dict):
        """The COCO joints of bodies whose pose and translation stay as in ``params`` as an affine function
        of their betas: (base (B, 17, 3), directions (B, 17, 3, K)) m, joints = base + directions · betas."""
        return self._affine_in_betas(params, self.stage1_vertices)[:2]

    @torch.no_grad()
    def _affine_in_betas(self, params: dict, skinned: "_SkinnedVertices"):
        """The COCO joints and the surface vertices of ``skinned`` of bodies whose pose and translation stay
        as in ``params``, as affine functions of their betas: (COCO base (B, 17, 3), COCO directions
        (B, 17, 3, K), surface base (B, M, 3) or None, surface directions (B, M, 3, K) or None), metres;
        joints = base + directions · betas.

        With the rotations fixed, linear blend skinning is affine in the betas (shaped vertices and rest
        joints are linear in them, the joint rotations do not depend on them), so one body pass for
        betas 0 and each unit vector gives the map exactly."""
        batch, count = params["betas"].shape
        dtype, device = params["betas"].dtype, params["betas"].device
        unit = torch.cat([torch.zeros(1, count, dtype=dtype, device=device), torch.eye(count, dtype=dtype, device=device)])
        repeated = {key: params[key].detach().repeat_interleave(count + 1, 0)
                    for key in ("global_orient", "body_pose", "transl")}
        repeated["betas"] = unit.repeat(batch, 1)
        coco, surface = self._posed(repeated, skinned)
        coco = coco.reshape(batch, count + 1, 17, 3)
        maps = [coco[:, 0], (coco[:, 1:] - coco[:, :1]).permute(0, 2, 3, 1)]
        if surface is None:
            return (*maps, None, None)
        surface = surface.reshape(batch, count + 1, -1, 3)
        return (*maps, surface[:, 0], (surface[:, 1:] - surface[:, :1]).permute(0, 2, 3, 1))

    def fit_shared_shape(self, inputs: FitInputs, global_orient: torch.Tensor, body_pose: torch.Tensor,
                         betas: torch.Tensor, transl: torch.Tensor, groups: torch.Tensor, should_stop=None) -> torch.Tensor:
        """One shape per group of persons — the frames of one tracked person — fitted to all of them at once
        with their poses held as fitted (the tracking section's ``shape_fit_*`` keys).

        inputs: B persons (each a frame of its group's person); global_orient (B, 3), body_pose (B, 69)
        rad, betas (B, 10), transl (B, 3) m: the persons' own fits; groups: (B,) long, 0..G-1.
        Returns (B, 10) betas, equal within a group. should_stop: see :meth:`fit`.

        The loss is the sum over a group's frames of stage 2's hip-aligned reprojection term plus the
        shape prior counted once for the group (a MAP estimate of one body from many views: a per-frame
        fit pulls a tall or short person towards the mean body once per frame, and averaging such fits
        keeps that pull). The LiDAR enters through each frame's held pose and depth, which its own fit
        took from the points. With ``shape_fit_pointcloud_weight`` > 0 a chamfer term to the points is
        added (each frame's translation then moves too), on the surface whose normals face the sensor
        by more than ``shape_fit_dot_product_threshold``; on the simulator it made the bodies thinner
        (girth and limb thickness, which a front-only scan and the keypoints hardly see) and raised
        PVE, hence the default 0. Poses held fixed make the joints (and the surface) affine in the
        betas, so each step costs a few tensor products rather than a body pass.
        A person whose loss turns non-finite keeps its group's starting shape."""
        cfg, schedule = self.config, self.config.tracking
        groups = groups.to(self.device, torch.long)
        count = int(groups.max()) + 1 if groups.numel() else 0
        members = torch.zeros(count, dtype=betas.dtype, device=self.device).index_add_(
            0, groups, torch.ones_like(groups, dtype=betas.dtype))
        start = torch.zeros(count, betas.shape[1], dtype=betas.dtype, device=self.device).index_add_(
            0, groups, betas.to(self.device)) / members[:, None]
        params = {"global_orient": global_orient.to(self.device), "body_pose": body_pose.to(self.device),
                  "betas": start[groups], "transl": transl.to(self.device)}
        if schedule.shape_fit_iterations <= 0 or not len(groups):
            return params["betas"].cpu()
        visibility = (keypoint_visibility(inputs.confidence, inputs.lidar_flag, cfg.joint_conf_threshold)
                      if cfg.visibility_filter else all_visible(inputs.batch_size, self.device))
        image_conf = inputs.confidence * visibility.image_keypoints
        use_points = cfg.use_lidar and schedule.shape_fit_pointcloud_weight > 0
        if use_points:
            use_3d = (inputs.points_mask.sum(1) >= cfg.min_lidar_points)
            skinned, columns = self._warm_surface(schedule.surface_vertices)
            coco_base, coco_dirs, surface_base, surface_dirs = self._affine_in_betas(params, skinned)
            with torch.no_grad():
                vertices = self.body(**params).vertices
                mask = self.surface.mask(vertices, visibility.lidar_parts, inputs.sensor_origin,
                                         schedule.shape_fit_dot_product_threshold)[:, columns] & use_3d[:, None]
            points_index = self._nearest_index(inputs.points, inputs.points_mask & use_3d[:, None])
        else:
            coco_base, coco_dirs = self._coco_affine_in_betas(params)
        transl0 = params["transl"].clone()
        prior_share = 1.0 / members[groups]

        def loss_fn(p):
            coco = coco_base + torch.einsum("bjck,bk->bjc", coco_dirs, p["betas"])
            loss = reprojection_loss(coco, inputs.keypoints, image_conf, inputs.K, cfg.stage2.sigma_px, True)
            loss = loss + cfg.stage2.shape_weight ** 2 * prior_share * shape_prior(p["betas"])
            if use_points:
                surface = (surface_base + torch.einsum("bmck,bk->bmc", surface_dirs, p["betas"])
                           + (p["transl"] - transl0)[:, None])
                loss = loss + schedule.shape_fit_pointcloud_weight ** 2 * self._chamfer(surface, mask, inputs, use_3d,
                                                                                         points_index)
            return loss

        usable = inputs.usable.to(self.device)
        active = usable.clone()
        trainable = ("betas", "transl") if use_points else ("betas",)
        self._run_stage("shape", params, trainable, schedule.shape_fit_iterations, loss_fn, active,
                        [[] for _ in range(inputs.batch_size)], {}, should_stop, schedule.shape_fit_learning_rate,
                        shared={"betas": groups})
        # the active members of a group moved together; a group with none keeps its starting shape, and so
        # does one with a member whose loss turned non-finite (its betas held from that step on)
        spoiled = torch.zeros(count, dtype=torch.long, device=self.device).index_add_(
            0, groups, (usable & ~active).to(torch.long)) > 0
        fitted = start.clone().index_copy_(0, groups[active], params["betas"][active])
        return torch.where(spoiled[:, None], start, fitted)[groups].cpu()

    def rest_pelvis(self, betas: torch.Tensor) -> torch.Tensor:
        """(B, 3) the rest-pose pelvis (SMPL joint 0) of shapes ``betas`` (B, 10), metres."""
        return self.body.rest_joints(betas)[:, 0]

    def _nearest_index(self, points: torch.Tensor, mask: torch.Tensor) -> Optional[FixedPointsNearest]:
        """A nearest-neighbour index over fixed ``points`` (B, N, 3) with ``mask`` (B, N), kept across the
        optimizer steps of one fit on the CPU path (None on CUDA or with brute-force neighbours)."""
        if self.device.type == "cuda" or self.config.nearest_neighbours == "brute":
            return None
        return FixedPointsNearest(points, mask)

    def _chamfer(self, surface: torch.Tensor, surface_mask: torch.Tensor, inputs: FitInputs, use_3d: torch.Tensor,
                 points_index=None, surface_index=None, surface_shift=None) -> torch.Tensor:
        """(B,) chamfer distance (m²) between the masked surface subset (B, M, 3) and each person's points;
        the indexes as in :func:`~smplify3d_core.geometry.nearest.chamfer_distance`."""
        return chamfer_distance(
            surface, surface_mask & use_3d[:, None], inputs.points, inputs.points_mask & use_3d[:, None],
            method=self.config.nearest_neighbours, points_index=points_index, surface_index=surface_index,
            surface_shift=surface_shift,
        )

    def _surface_mask(self, params: dict, lidar_parts: torch.Tensor, inputs: FitInputs,
                      full_vertices: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, M) visible-surface mask of the bodies ``params``; poses the whole mesh (no gradient) only when
        the test needs vertex normals and ``full_vertices`` (B, V, 3) are not given."""
        threshold = self.config.dot_product_threshold
        if threshold > -1.0 and full_vertices is None:
            with torch.no_grad():
                full_vertices = self.body(params["global_orient"], params["body_pose"], params["betas"],
                                          params["transl"]).vertices
        return self.surface.mask(full_vertices, lidar_parts, inputs.sensor_origin, threshold)

    def _median_point_distance(self, surface: torch.Tensor, surface_mask: torch.Tensor, inputs: FitInputs) -> torch.Tensor:
        """(B,) median distance (m) of each person's LiDAR points to its nearest visible surface vertex
        (surface (B, S, 3)); infinite for a person without points or surface."""
        index = nearest_indices(inputs.points, surface, surface_mask, self.config.nearest_neighbours)  # (B, M)
        nearest = torch.gather(surface, 1, index[..., None].expand(-1, -1, 3))
        distances = (inputs.points - nearest).norm(dim=-1).masked_fill(~surface_mask.any(1, keepdim=True), float("inf"))
        distances = distances.masked_fill(~inputs.points_mask, float("nan"))
        median = torch.nanmedian(distances, dim=1).values
        return torch.nan_to_num(median, nan=float("inf"), posinf=float("inf"))

    def _run_stage(self, name: str, params: dict, trainable: tuple, iterations: int, loss_fn, active: torch.Tensor,
                   flags: list, result_losses: dict, should_stop=None, learning_rate: Optional[float] = None,
                   frozen: Optional[dict] = None, shared: Optional[dict] = None) -> None:
        """Adam on ``trainable`` for ``iterations`` steps; guards each person against non-finite losses.
        frozen: parameter name -> (B,) bool, persons whose parameter stays as it is. shared: parameter
        name -> (B,) long group index: every person of a group gets the group's summed gradient, so
        persons that start equal stay equal (one parameter fitted to all of them). ``active`` (B,) is
        updated in place; a person whose loss turned non-finite is flagged once the stage ends (no
        host round trip inside the loop). Raises FitCancelled before a step when ``should_stop()`` is true."""
        if iterations <= 0 or not trainable:
            return
        frozen = frozen or {}
        leaves = {k: params[k].detach().clone().requires_grad_(True) for k in trainable}
        for key, groups in (shared or {}).items():
            if key in leaves:
                leaves[key].register_hook(lambda grad, g=groups: torch.zeros_like(grad).index_add_(0, g, grad)[g])
        optimizer = torch.optim.Adam(list(leaves.values()), lr=learning_rate or self.config.learning_rate,
                                     betas=(0.9, 0.999))
        last_good = {k: v.detach().clone() for k, v in leaves.items()}
        holds: dict = {}  # per leaf, (B, 1) persons whose values stay as they are this step
        first_loss = None
        losses = None
        active_before = active.clone()
        for _ in range(iterations):
            if should_stop is not None and should_stop():
                raise FitCancelled(f"fit cancelled in {name}")
            optimizer.zero_grad(set_to_none=False)
            losses = loss_fn({**params, **leaves})
            active &= torch.isfinite(losses)
            if first_loss is None:
                first_loss = losses.detach().clone()
            total = torch.where(active, losses, torch.zeros_like(losses)).sum()
            if total.requires_grad:
                total.backward()
            with torch.no_grad():
                for key, leaf in leaves.items():
                    hold = ~active | frozen[key] if key in frozen else ~active
                    holds[key] = hold[:, None]
                    if leaf.grad is not None:
                        leaf.grad.masked_fill_(holds[key], 0.0).nan_to_num_(0.0, 0.0, 0.0)
                        last_good[key] = torch.where(active[:, None], leaf, last_good[key])
            optimizer.step()
            with torch.no_grad():
                for key, leaf in leaves.items():
                    leaf.copy_(torch.where(holds[key], last_good[key], leaf))
        with torch.no_grad():
            final = loss_fn({**params, **leaves})
            for key, leaf in leaves.items():
                bad = ~torch.isfinite(leaf).all(1)
                leaf[bad] = last_good[key][bad]
                params[key] = leaf.detach()
        for b in torch.nonzero(active_before & ~active).flatten().tolist():
            flags[b].append(f"non_finite_loss_{name}")
        result_losses[name] = (first_loss.cpu(), final.detach().cpu())

    # -- main entry ------------------------------------------------------------------------
    def fit(self, inputs: FitInputs, should_stop=None, warm: Optional[WarmStart] = None) -> FitResult:
        """Run visibility filter, ICP and the three stages on a batch of persons.

        should_stop: an optional callable checked before ICP and before every optimizer step; when it
        returns True the fit ends with :class:`FitCancelled` (e.g. the node shutting down mid-fit).
        warm: the persons are tracked: run the reduced ``tracking`` schedule with its temporal terms
        towards ``warm``'s prediction (module docstring).
        """
        cfg = self.config
        schedule = cfg.tracking
        timings: dict = {}
        if self.warm_up_seconds is None:
            timings["warm_up"] = self.warm_up()
        torch.manual_seed(self.seed)
        stage_losses: dict = {}
        flags = [list(f) for f in inputs.flags]
        batch = inputs.batch_size
        active = inputs.usable.clone()

        start = time.perf_counter()
        if cfg.visibility_filter:
            visibility = keypoint_visibility(inputs.confidence, inputs.lidar_flag, cfg.joint_conf_threshold)
        else:
            visibility = all_visible(batch, self.device)
        below = inputs.confidence.amax(1) < cfg.joint_conf_threshold
        for b in torch.nonzero(below).flatten().tolist():
            flags[b].append("low_keypoint_confidence")
        point_count = inputs.points_mask.sum(1)
        use_3d = (point_count >= cfg.min_lidar_points) & torch.tensor(cfg.use_lidar, device=self.device)
        for b in torch.nonzero((point_count > 0) & (point_count < cfg.min_lidar_points)).flatten().tolist():
            flags[b].append("too_few_lidar_points")
        image_conf = inputs.confidence * visibility.image_keypoints
        deviation_weights = occluded_joint_weights(visibility.image_parts).to(inputs.confidence.dtype)
        timings["visibility"] = time.perf_counter() - start

        params = {
            "global_orient": inputs.init_global_orient.clone(),
            "body_pose": inputs.init_body_pose.clone(),
            "betas": inputs.init_betas.clone(),
            "transl": inputs.init_transl.clone(),
        }

        start = time.perf_counter()
        # the LiDAR points stay fixed during the fit: one index over them serves ICP and the stages
        points_index = self._nearest_index(inputs.points, inputs.points_mask & use_3d[:, None]) if cfg.use_lidar else None
        if should_stop is not None and should_stop():
            raise FitCancelled("fit cancelled before ICP")
        if cfg.icp.enabled and cfg.use_lidar and bool(use_3d.any()):
            with torch.no_grad():
                out = self.body(**params)
                surface_mask = self.surface.mask(out.vertices, visibility.lidar_parts, inputs.sensor_origin,
                                                 cfg.dot_product_threshold)
                surface_mask &= use_3d[:, None] & active[:, None]
                if warm is not None:  # a good prediction needs no rigid alignment
                    residual = self._median_point_distance(out.vertices[:, self.surface.subset], surface_mask, inputs)
                    surface_mask &= (residual > schedule.icp_residual_m)[:, None]
                transform = rigid_icp(
                    out.vertices[:, self.surface.subset], surface_mask, inputs.points, inputs.points_mask,
                    iterations=schedule.icp_iterations if warm is not None else cfg.icp.iterations,
                    with_rotation=not cfg.icp.keep_rotation,
                    max_distance=cfg.icp.max_distance_m, tolerance=cfg.icp.tolerance_m, target_index=points_index,
                )
                new_orient, new_transl = apply_rigid_to_smpl(
                    params["global_orient"], params["transl"], self.rest_pelvis(params["betas"]),
                    transform.rotation, transform.translation,
                )
                moved = surface_mask.any(1)
                params["global_orient"] = torch.where(moved[:, None], new_orient, params["global_orient"])
                params["transl"] = torch.where(moved[:, None], new_transl, params["transl"])
        timings["icp"] = time.perf_counter() - start

        init_body_pose = params["body_pose"].clone()
        shape_scale = 1.0
        if warm is not None:
            predicted_pose, predicted_transl = warm.body_pose.to(self.device), warm.transl.to(self.device)
            shape_scale = warm.shape_prior_scale.to(self.device, inputs.init_betas.dtype)
            if warm.anchor_pose is not None:
                init_body_pose = warm.anchor_pose.to(self.device, inputs.init_body_pose.dtype)
        lidar_parts = visibility.lidar_parts

        stage1_map = {}

        def stage1_loss(p):
            if cfg.subset_skinning:  # the pose is fixed in stage 1: the COCO joints are affine in the betas
                if not stage1_map:
                    stage1_map["base"], stage1_map["directions"] = self._coco_affine_in_betas(p)
                coco = stage1_map["base"] + torch.einsum("bjck,bk->bjc", stage1_map["directions"], p["betas"])
            else:
                coco, _ = self._posed(p, self.stage1_vertices)
            reprojection = reprojection_loss(coco, inputs.keypoints, image_conf, inputs.K, cfg.stage1.sigma_px, True)
            return reprojection + cfg.stage1.shape_weight ** 2 * shape_prior(p["betas"])

        # which surface vertices face the sensor: fixed by the parts when no normal test is asked for,
        # else recomputed every ``visible_surface_refresh_steps`` passes
        stage2_mask = {"calls": 0, "mask": None}

        stage2_vertices, mask_columns = (self._warm_surface(schedule.surface_vertices) if warm is not None
                                         else (self.stage2_vertices, slice(None)))

        def stage2_loss(p):
            coco, surface = self._posed(p, stage2_vertices)
            refresh = max(1, int(cfg.visible_surface_refresh_steps))
            if stage2_mask["mask"] is None or (cfg.dot_product_threshold > -1.0 and stage2_mask["calls"] % refresh == 0):
                stage2_mask["mask"] = self._surface_mask(p, lidar_parts, inputs)[:, mask_columns]
            stage2_mask["calls"] += 1
            s2 = cfg.stage2
            loss = reprojection_loss(coco, inputs.keypoints, image_conf, inputs.K, s2.sigma_px, True)
            loss = loss + s2.pose_weight ** 2 * self.pose_prior(p["body_pose"])
            loss = loss + s2.angle_weight ** 2 * angle_prior(p["body_pose"])
            loss = loss + s2.shape_weight ** 2 * shape_scale * shape_prior(p["betas"])
            loss = loss + s2.deviation_weight ** 2 * occluded_part_deviation(p["body_pose"], init_body_pose, deviation_weights)
            if cfg.use_lidar:
                loss = loss + s2.pointcloud_weight ** 2 * self._chamfer(surface, stage2_mask["mask"], inputs, use_3d,
                                                                        points_index)
            if warm is not None:
                loss = loss + schedule.temporal_pose_weight ** 2 * ((p["body_pose"] - predicted_pose) ** 2).sum(1)
            return loss

        learning_rate = schedule.learning_rate if warm is not None else cfg.learning_rate
        frozen = {"betas": warm.shape_fixed.to(self.device)} if warm is not None else {}
        start = time.perf_counter()
        self._run_stage("stage1", params, ("betas",), 0 if warm is not None else cfg.stage1.iterations, stage1_loss,
                        active, flags, stage_losses, should_stop)
        timings["stage1"] = time.perf_counter() - start
        start = time.perf_counter()
        if warm is None:
            stage2_iterations = cfg.stage2.iterations
        elif bool(frozen["betas"].all()):
            stage2_iterations = schedule.settled_stage2_iterations
        else:
            stage2_iterations = schedule.stage2_iterations
        self._run_stage("stage2", params, ("body_pose", "betas", "global_orient"), stage2_iterations, stage2_loss,
                        active, flags, stage_losses, should_stop, learning_rate, frozen)
        timings["stage2"] = time.perf_counter() - start

        # stage 3 moves the mesh rigidly: pose it once and only add the translation change
        start = time.perf_counter()
        with torch.no_grad():
            posed = self.body(params["global_orient"], params["body_pose"], params["betas"], params["transl"])
            stage3_transl = params["transl"].clone()
            # a warm fit reads the same (coarser) surface as its stage 2
            base_surface = posed.vertices[:, self.surface.subset[mask_columns]] - params["transl"][:, None]
            base_coco = self._coco_joints(posed.vertices) - params["transl"][:, None]
            # a pure translation hardly changes which vertices face the sensor: one mask for the stage
            stage3_mask = (self._surface_mask(params, lidar_parts, inputs, posed.vertices)[:, mask_columns]
                           if cfg.use_lidar else None)
            # the surface only translates: the points' nearest vertices come from one index over it
            surface_index = self._nearest_index(base_surface, stage3_mask & use_3d[:, None]) if cfg.use_lidar else None

        def stage3_loss(p):
            loss = reprojection_loss(base_coco + p["transl"][:, None], inputs.keypoints, image_conf, inputs.K,
                                     cfg.stage3.sigma_px, False)
            loss = loss + cfg.stage3.shape_weight ** 2 * shape_prior(p["betas"])
            if cfg.use_lidar:
                shift = p["transl"][:, None]
                chamfer = self._chamfer(base_surface + shift, stage3_mask, inputs, use_3d, points_index, surface_index, shift)
                loss = loss + cfg.stage3.pointcloud_weight ** 2 * chamfer
            if warm is not None:
                loss = loss + schedule.temporal_transl_weight ** 2 * ((p["transl"] - predicted_transl) ** 2).sum(1)
            return loss

        self._run_stage("stage3", params, ("transl",), schedule.stage3_iterations if warm is not None else cfg.stage3.iterations,
                        stage3_loss, active, flags, stage_losses, should_stop, learning_rate)
        timings["stage3"] = time.perf_counter() - start

        with torch.no_grad():  # stage 3 only translated the body posed before it
            shift = (params["transl"] - stage3_transl)[:, None]
            out = BodyOutput(vertices=posed.vertices + shift, joints=posed.joints + shift)
            coco = base_coco + params["transl"][:, None]
            reprojection_px = mean_reprojection_error(coco, inputs.keypoints,
                                                      visibility.image_keypoints & (inputs.confidence > 0), inputs.K)
            chamfer = (self._chamfer(out.vertices[:, self.surface.subset],
                                     self._surface_mask(params, lidar_parts, inputs, out.vertices), inputs, use_3d,
                                     points_index) if cfg.use_lidar else torch.zeros(batch, device=self.device))
        valid = inputs.usable & torch.isfinite(out.vertices).all(2).all(1)
        return FitResult(
            global_orient=params["global_orient"].cpu(), body_pose=params["body_pose"].cpu(),
            betas=params["betas"].cpu(), transl=params["transl"].cpu(),
            vertices=out.vertices.cpu(), joints=out.joints.cpu(),
            reprojection_error_px=reprojection_px.cpu(), chamfer_m2=chamfer.cpu(),
            lidar_point_count=point_count.cpu(),
            visible_parts=[visibility.lidar_part_names(b) for b in range(batch)],
            flags=flags, valid=valid.cpu(), fitted=valid.cpu().clone(), stage_seconds=timings, stage_losses=stage_losses,
        )
