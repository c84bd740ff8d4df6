"""Batched SMPL forward pass (linear blend skinning) in torch.

Equivalent to ``smplx.SMPL`` for the 24 SMPL joints and the 6890 vertices, but built
from :class:`~smplify3d_core.body.loader.SMPLModelData` so that one loader serves
real and synthetic model files. Device-agnostic: move it with ``.to(device)``.

The kinematics are small functions that every caller shares: :func:`blend_shapes`,
:func:`rest_joints` (a linear map of the betas, precomputed), :func:`forward_kinematics` and
:func:`skin`. A pass can skin only some vertices (:meth:`SMPLBody.vertex_subset`): the joints
are the same, the cost of the vertex part scales with the number of vertices skinned. A fit
whose losses read a few thousand vertices need not pose all 6890 at every step. Points that are
fixed linear combinations of the posed vertices (e.g. the COCO joints of a vertex regressor) need
no vertex at all (:meth:`SMPLBody.skinned_regressor`): linear blend skinning is linear in each
vertex, so the regressor can be summed into per-bone terms once and applied to the bones' transforms.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from smplify3d_core.body.loader import SMPLModelData, load_smpl_data
from smplify3d_core.geometry.rotations import axis_angle_to_matrix

NUM_JOINTS = 24
POSE_FEATURES = 9 * (NUM_JOINTS - 1)  # 207: (R_j - I) of the 23 body joints


@dataclass
class BodyOutput:
    """vertices: (B, V, 3) metres (V: the skinned vertices); joints: (B, 24, 3) SMPL joints, metres;
    regressed: (B, J, 3) metres, the points of a :class:`SkinnedRegressor` when one was passed, else None."""

    vertices: torch.Tensor
    joints: torch.Tensor
    regressed: Optional[torch.Tensor] = None


@dataclass
class VertexSubset:
    """The model's per-vertex buffers restricted to some vertices (what a pass over them reads).

    vertex_ids: (S,) long ids into the full mesh; v_template: (S, 3) m; shapedirs: (S*3, K) m;
    posedirs: (207, S*3) m; lbs_weights: (S, 24). Make one with :meth:`SMPLBody.vertex_subset`
    and pass it to the body's forward as ``vertices=``.
    """

    vertex_ids: torch.Tensor
    v_template: torch.Tensor
    shapedirs: torch.Tensor
    posedirs: torch.Tensor
    lbs_weights: torch.Tensor

    def __len__(self) -> int:
        return int(self.vertex_ids.shape[0])


@dataclass
class SkinnedRegressor:
    """A vertex regressor R (J, V) summed into per-bone terms, so that R @ posed vertices is computed from
    the bones' transforms without skinning a vertex.

    With x_v the shaped, pose-corrected rest vertices and w_vk the skinning weights, the posed vertex is
    Σ_k w_vk (R_k x_v + o_k), so R @ vertices = Σ_k R_k X_jk + W_jk o_k with X_jk = Σ_v R_jv w_vk x_v,
    linear in the betas and the pose feature: template (J, 24, 3) m, shapedirs (J, 24, 3, K) m,
    posedirs (J, 24, 3, 207) m; weights W (J, 24). Make one with :meth:`SMPLBody.skinned_regressor`.
    """

    template: torch.Tensor
    shapedirs: torch.Tensor
    posedirs: torch.Tensor
    weights: torch.Tensor

    def __len__(self) -> int:
        return int(self.weights.shape[0])


def blend_shapes(betas: torch.Tensor, v_template: torch.Tensor, shapedirs: torch.Tensor) -> torch.Tensor:
    """Shaped rest-pose vertices: (B, K) betas, (S, 3) template, (S*3, >=K) directions -> (B, S, 3) m."""
    count = v_template.shape[0]
    return v_template + (betas @ shapedirs[:, : betas.shape[1]].T).reshape(betas.shape[0], count, 3)


def rest_joints(betas: torch.Tensor, joint_template: torch.Tensor, joint_shapedirs: torch.Tensor) -> torch.Tensor:
    """Rest-pose joints of shapes ``betas`` (B, K): ``J_regressor @ blend_shapes(betas)`` through its
    precomputed linear map (joint_template (24, 3), joint_shapedirs (72, >=K)). Returns (B, 24, 3) m."""
    return blend_shapes(betas, joint_template, joint_shapedirs)


@lru_cache(maxsize=None)
def kinematic_levels(parents: Tuple[int, ...]) -> Tuple[Tuple[Tuple[int, ...], Tuple[int, ...]], ...]:
    """The joints of a kinematic tree grouped by depth, for a forward pass with one product per level.

    parents: each joint's parent (``parents[0]`` is the root's, unused); a parent must precede its
    children. Returns, per depth 1, 2, ..., (the joints at that depth, their parents' positions in
    the root-first concatenation of the earlier levels' joints).
    """
    depth = [0] * len(parents)
    for j in range(1, len(parents)):
        if not 0 <= parents[j] < j:
            raise ValueError(f"joint {j}'s parent {parents[j]} does not precede it")
        depth[j] = depth[parents[j]] + 1
    order = [0]  # joints in the order their level's results are concatenated
    levels = []
    for level in range(1, max(depth) + 1):
        joints = tuple(j for j in range(len(parents)) if depth[j] == level)
        levels.append((joints, tuple(order.index(parents[j]) for j in joints)))
        order += joints
    return tuple(levels)


@lru_cache(maxsize=None)
def _joint_slots(parents: Tuple[int, ...]) -> Tuple[int, ...]:
    """Each joint's place in the level-by-level concatenation of :func:`kinematic_levels` (root first)."""
    order = [0] + [j for joints, _ in kinematic_levels(parents) for j in joints]
    return tuple(order.index(j) for j in range(len(parents)))


@lru_cache(maxsize=None)
def _kinematic_index(parents: Tuple[int, ...], device: torch.device):
    """The index tensors of :func:`forward_kinematics` on ``device``, made once: (each joint's parent
    (J-1,), per level (its joints, their parents' slots), each joint's slot (J,)). Indexing with
    tensors already on the device keeps a step free of host-to-device copies, which on a GPU stall it."""
    def as_index(values):
        return torch.tensor(values, dtype=torch.long, device=device)

    levels = tuple((as_index(joints), as_index(slots)) for joints, slots in kinematic_levels(parents))
    return as_index(parents[1:]), levels, as_index(_joint_slots(parents))


def forward_kinematics(rotations: torch.Tensor, joints_rest: torch.Tensor, parents: Sequence[int]):
    """World rotations (B, J, 3, 3) and positions (B, J, 3) of the joints.

    rotations: (B, J, 3, 3) each joint's rotation relative to its parent; joints_rest: (B, J, 3) m;
    parents: the kinematic tree (parents[0] unused). The joints of one depth are posed together
    (:func:`kinematic_levels`), so the pass costs a few batched products rather than one per joint.
    """
    parents = parents if type(parents) is tuple else tuple(int(p) for p in parents)  # the body's own is one already
    parent_index, levels, slots = _kinematic_index(parents, rotations.device)
    relative = torch.cat([joints_rest[:, :1], joints_rest[:, 1:] - joints_rest.index_select(1, parent_index)], dim=1)
    world_rot, world_pos = rotations[:, :1], joints_rest[:, :1]  # root first, then level by level
    for joints, parent_slots in levels:
        parent_rot, parent_pos = world_rot.index_select(1, parent_slots), world_pos.index_select(1, parent_slots)
        level_rot = parent_rot @ rotations.index_select(1, joints)
        level_pos = parent_pos + (parent_rot @ relative.index_select(1, joints)[..., None])[..., 0]
        world_rot = torch.cat([world_rot, level_rot], dim=1)
        world_pos = torch.cat([world_pos, level_pos], dim=1)
    return world_rot.index_select(1, slots), world_pos.index_select(1, slots)


def pose_feature(rotations: torch.Tensor) -> torch.Tensor:
    """(B, 207) the pose blend shapes' input, (R_j − I) of the 23 body joints' relative rotations (B, 24, 3, 3)."""
    eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
    return (rotations[:, 1:] - eye).reshape(rotations.shape[0], POSE_FEATURES)


def bone_offsets(world_rot: torch.Tensor, joints: torch.Tensor, joints_rest: torch.Tensor) -> torch.Tensor:
    """(B, 24, 3) the translation o_j of each bone's transform x -> R_j x + o_j, o_j = J_j − R_j J_j^rest (m)."""
    return joints - (world_rot @ joints_rest[..., None])[..., 0]


def skin(shaped: torch.Tensor, rotations: torch.Tensor, world_rot: torch.Tensor, joints: torch.Tensor,
         joints_rest: torch.Tensor, posedirs: torch.Tensor, lbs_weights: torch.Tensor) -> torch.Tensor:
    """Posed vertices (B, S, 3) m of shaped rest vertices (B, S, 3): pose correctives, then linear blend
    skinning with the joints' transforms x -> R_j (x - J_j^rest) + J_j (world_rot (B, 24, 3, 3), joints
    and joints_rest (B, 24, 3)); posedirs (207, S*3), lbs_weights (S, 24) of the same vertices."""
    batch, count = shaped.shape[:2]
    posed = shaped + (pose_feature(rotations) @ posedirs).reshape(batch, count, 3)
    offsets = bone_offsets(world_rot, joints, joints_rest)
    per_joint = torch.cat([world_rot.reshape(batch, NUM_JOINTS, 9), offsets], dim=-1)  # (B, 24, 12)
    blended = lbs_weights @ per_joint  # (B, S, 12): one matmul instead of S tiny ones
    blended_rot = blended[..., :9].reshape(batch, count, 3, 3)
    return (blended_rot * posed[:, :, None, :]).sum(-1) + blended[..., 9:]


def skin_regressor(regressor: SkinnedRegressor, betas: torch.Tensor, rotations: torch.Tensor, world_rot: torch.Tensor,
                   joints: torch.Tensor, joints_rest: torch.Tensor) -> torch.Tensor:
    """(B, J, 3) m: the regressor's points of the posed mesh (what ``R @ skin(...)`` gives over all vertices),
    from the bones' transforms (as in :func:`skin`) and betas (B, K)."""
    rest = (regressor.template + torch.einsum("jkcn,bn->bjkc", regressor.shapedirs[..., : betas.shape[1]], betas)
            + torch.einsum("jkcp,bp->bjkc", regressor.posedirs, pose_feature(rotations)))  # (B, J, 24, 3)
    rotated = torch.einsum("bkcd,bjkd->bjc", world_rot, rest)
    return rotated + torch.einsum("jk,bkc->bjc", regressor.weights, bone_offsets(world_rot, joints, joints_rest))


class SMPLBody(torch.nn.Module):
    """SMPL body model.

    forward(global_orient (B,3), body_pose (B,69), betas (B,K<=num_betas), transl (B,3), vertices=None)
    returns :class:`BodyOutput`. Rotations are axis-angle in radians, translation in metres;
    ``vertices`` (a :class:`VertexSubset`) skins only those vertices.
    """

    def __init__(self, data: SMPLModelData, num_betas: int = 10, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if num_betas > data.num_betas:
            raise ValueError(f"the model {data.source} has {data.num_betas} shape directions, {num_betas} were asked for")
        self.data = data
        self.num_betas = num_betas
        count = data.v_template.shape[0]
        shapedirs = np.asarray(data.shapedirs[:, :, :num_betas], dtype=np.float64)
        self.register_buffer("v_template", torch.as_tensor(data.v_template, dtype=dtype))
        self.register_buffer("shapedirs", torch.as_tensor(shapedirs, dtype=dtype))  # (V, 3, K)
        # (207, V*3) as in SMPL's pose blend shape product
        self.register_buffer("posedirs", torch.as_tensor(data.posedirs.reshape(-1, POSE_FEATURES).T, dtype=dtype))
        self.register_buffer("J_regressor", torch.as_tensor(data.J_regressor, dtype=dtype))
        self.register_buffer("lbs_weights", torch.as_tensor(data.weights, dtype=dtype))
        self.register_buffer("faces_tensor", torch.as_tensor(data.faces, dtype=torch.long))
        # the joint regressor applied to the template and to each shape direction (exact: both linear)
        regressor = np.asarray(data.J_regressor, dtype=np.float64)
        self.register_buffer("joint_template", torch.as_tensor(regressor @ data.v_template, dtype=dtype))
        joint_dirs = np.einsum("jv,vck->jck", regressor, shapedirs).reshape(NUM_JOINTS * 3, num_betas)
        self.register_buffer("joint_shapedirs", torch.as_tensor(joint_dirs, dtype=dtype))
        self.parents = tuple(int(p) for p in data.parents)
        self.num_vertices = count

    @classmethod
    def from_path(cls, path, gender: str = "neutral", num_betas: int = 10, device="cpu", dtype=torch.float32) -> "SMPLBody":
        """Load a model file or folder (see :func:`~smplify3d_core.body.loader.load_smpl_data`)."""
        return cls(load_smpl_data(path, gender), num_betas=num_betas, dtype=dtype).to(device)

    @property
    def faces(self) -> np.ndarray:
        """(F, 3) int64 triangle vertex ids."""
        return self.data.faces

    def vertex_subset(self, vertex_ids) -> VertexSubset:
        """The buffers of vertices ``vertex_ids`` (S,) (ids into the 6890), on the body's current device."""
        ids = torch.as_tensor(np.asarray(vertex_ids), dtype=torch.long, device=self.v_template.device)
        if ids.ndim != 1 or (len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= self.num_vertices)):
            raise ValueError(f"vertex ids must be a 1-D array of ids in [0, {self.num_vertices})")
        columns = (ids[:, None] * 3 + torch.arange(3, device=ids.device)).reshape(-1)
        return VertexSubset(
            vertex_ids=ids, v_template=self.v_template[ids].contiguous(),
            shapedirs=self.shapedirs[ids].reshape(-1, self.num_betas).contiguous(),
            posedirs=self.posedirs[:, columns].contiguous(), lbs_weights=self.lbs_weights[ids].contiguous(),
        )

    def skinned_regressor(self, regressor) -> SkinnedRegressor:
        """The per-bone form of a vertex regressor ``regressor`` (J, 6890) (each output point a fixed linear
        combination of the posed vertices), on the body's current device; pass it to the forward as
        ``regressor=`` to get its points without skinning the vertices it reads."""
        matrix = torch.as_tensor(np.asarray(regressor), dtype=torch.float64)
        if matrix.ndim != 2 or matrix.shape[1] != self.num_vertices:
            raise ValueError(f"a vertex regressor must be (J, {self.num_vertices}), got {tuple(matrix.shape)}")
        support = torch.nonzero(matrix.abs().sum(0) > 0).flatten()  # the vertices it reads
        joints = matrix.shape[0]
        per_bone = matrix[:, support, None] * self.lbs_weights.double().cpu()[support][None]  # (J, S, 24)
        per_bone = per_bone.permute(0, 2, 1).reshape(joints * NUM_JOINTS, len(support))
        dtype, device = self.v_template.dtype, self.v_template.device

        def summed(per_vertex: torch.Tensor) -> torch.Tensor:  # (S, 3, n) -> (J, 24, 3, n)
            return (per_bone @ per_vertex.reshape(len(support), -1)).reshape(joints, NUM_JOINTS, 3, -1).to(device, dtype)

        ids = support.to(self.v_template.device)
        columns = (ids[:, None] * 3 + torch.arange(3, device=ids.device)).reshape(-1)
        posedirs = self.posedirs[:, columns].double().cpu().T.reshape(len(support), 3, POSE_FEATURES)
        return SkinnedRegressor(
            template=summed(self.v_template[ids].double().cpu()[..., None])[..., 0].contiguous(),
            shapedirs=summed(self.shapedirs[ids].double().cpu()).contiguous(), posedirs=summed(posedirs).contiguous(),
            weights=per_bone.sum(1).reshape(joints, NUM_JOINTS).to(device, dtype).contiguous(),
        )

    def rest_joints(self, betas: torch.Tensor) -> torch.Tensor:
        """(B, 24, 3) rest-pose joints of shapes ``betas`` (B, K), metres (no translation)."""
        betas = torch.as_tensor(betas, dtype=self.v_template.dtype, device=self.v_template.device)
        return rest_joints(betas.reshape(-1, betas.shape[-1]), self.joint_template, self.joint_shapedirs)

    def _batch(self, tensor: Optional[torch.Tensor], batch: int, width: int) -> torch.Tensor:
        if tensor is None:
            return self.v_template.new_zeros(batch, width)
        tensor = torch.as_tensor(tensor, dtype=self.v_template.dtype, device=self.v_template.device)
        if tensor.ndim == 1:
            tensor = tensor[None]
        if tensor.shape[0] != batch:
            raise ValueError(f"batch sizes disagree: {tensor.shape[0]} vs {batch}")
        return tensor

    def forward(
        self,
        global_orient: Optional[torch.Tensor] = None,
        body_pose: Optional[torch.Tensor] = None,
        betas: Optional[torch.Tensor] = None,
        transl: Optional[torch.Tensor] = None,
        vertices: Optional[VertexSubset] = None,
        regressor: Optional[SkinnedRegressor] = None,
    ) -> BodyOutput:
        first = next((torch.as_tensor(t) for t in (global_orient, body_pose, betas, transl) if t is not None), None)
        batch = first.shape[0] if first is not None and first.ndim > 1 else 1
        global_orient = self._batch(global_orient, batch, 3)
        body_pose = self._batch(body_pose, batch, 69)
        betas = self._batch(betas, batch, self.num_betas)
        transl = self._batch(transl, batch, 3)
        if body_pose.shape[1] != 69 or global_orient.shape[1] != 3 or transl.shape[1] != 3:
            raise ValueError("expected global_orient (B,3), body_pose (B,69), transl (B,3)")
        if betas.shape[1] > self.num_betas:
            raise ValueError(f"got {betas.shape[1]} betas, the model was built with {self.num_betas}")

        if vertices is None:
            template, shapedirs = self.v_template, self.shapedirs.reshape(-1, self.num_betas)
            posedirs, lbs_weights = self.posedirs, self.lbs_weights
        else:
            template, shapedirs, posedirs, lbs_weights = (vertices.v_template, vertices.shapedirs, vertices.posedirs,
                                                          vertices.lbs_weights)
        shaped = blend_shapes(betas, template, shapedirs)
        joints_rest = rest_joints(betas, self.joint_template, self.joint_shapedirs)
        rotations = axis_angle_to_matrix(torch.cat([global_orient, body_pose], dim=1).reshape(batch, NUM_JOINTS, 3))
        world_rot, joints = forward_kinematics(rotations, joints_rest, self.parents)
        posed = skin(shaped, rotations, world_rot, joints, joints_rest, posedirs, lbs_weights)
        regressed = None
        if regressor is not None:  # its rows' weights sum to the share of the translation each point takes
            regressed = (skin_regressor(regressor, betas, rotations, world_rot, joints, joints_rest)
                         + regressor.weights.sum(1)[None, :, None] * transl[:, None])
        return BodyOutput(vertices=posed + transl[:, None], joints=joints + transl[:, None], regressed=regressed)
