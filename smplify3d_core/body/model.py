"""Batched SMPL forward pass (linear blend skinning) in torch.

Equivalent to ``smplx.SMPL`` for the 24 SMPL joints and the 6890 vertices, but built
from :class:`~smplify3d_core.body.loader.SMPLModelData` so that one loader serves
real and synthetic model files. Device-agnostic: move it with ``.to(device)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from smplify3d_core.body.loader import SMPLModelData, load_smpl_data
from smplify3d_core.geometry.rotations import axis_angle_to_matrix


@dataclass
class BodyOutput:
    """vertices: (B, V, 3) metres; joints: (B, 24, 3) SMPL joints, metres."""

    vertices: torch.Tensor
    joints: torch.Tensor


class SMPLBody(torch.nn.Module):
    """SMPL body model.

    forward(global_orient (B,3), body_pose (B,69), betas (B,K<=num_betas), transl (B,3))
    returns :class:`BodyOutput`. Rotations are axis-angle in radians, translation in metres.
    """

    def __init__(self, data: SMPLModelData, num_betas: int = 10, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if num_betas > data.num_betas:
            raise ValueError(f"the model {data.source} has {data.num_betas} shape directions, {num_betas} were asked for")
        self.data = data
        self.num_betas = num_betas
        self.register_buffer("v_template", torch.as_tensor(data.v_template, dtype=dtype))
        self.register_buffer("shapedirs", torch.as_tensor(data.shapedirs[:, :, :num_betas], dtype=dtype))
        # (207, V*3) as in SMPL's pose blend shape product
        self.register_buffer("posedirs", torch.as_tensor(data.posedirs.reshape(-1, 207).T, dtype=dtype))
        self.register_buffer("J_regressor", torch.as_tensor(data.J_regressor, dtype=dtype))
        self.register_buffer("lbs_weights", torch.as_tensor(data.weights, dtype=dtype))
        self.register_buffer("faces_tensor", torch.as_tensor(data.faces, dtype=torch.long))
        self.parents = [int(p) for p in data.parents]

    @classmethod
    def from_path(cls, path, gender: str = "neutral", num_betas: int = 10, device="cpu", dtype=torch.float32) -> "SMPLBody":
        """Load a model file or folder (see :func:`~smplify3d_core.body.loader.load_smpl_data`)."""
        return cls(load_smpl_data(path, gender), num_betas=num_betas, dtype=dtype).to(device)

    @property
    def faces(self) -> np.ndarray:
        """(F, 3) int64 triangle vertex ids."""
        return self.data.faces

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
    ) -> BodyOutput:
        first = next((torch.as_tensor(t) for t in (global_orient, body_pose, betas, transl) if t is not None), None)
        batch = first.shape[0] if first is not None and first.ndim > 1 else 1
        global_orient = self._batch(global_orient, batch, 3)
        body_pose = self._batch(body_pose, batch, 69)
        betas = self._batch(betas, batch, self.num_betas)
        transl = self._batch(transl, batch, 3)
        if body_pose.shape[1] != 69 or global_orient.shape[1] != 3 or transl.shape[1] != 3:
            raise ValueError("expected global_orient (B,3), body_pose (B,69), transl (B,3)")
        num_betas = betas.shape[1]
        if num_betas > self.num_betas:
            raise ValueError(f"got {num_betas} betas, the model was built with {self.num_betas}")

        vertex_count = self.v_template.shape[0]
        shapedirs = self.shapedirs[:, :, :num_betas].reshape(vertex_count * 3, num_betas)
        shaped = self.v_template + (betas @ shapedirs.T).reshape(batch, vertex_count, 3)
        joints_rest = self.J_regressor @ shaped  # (B, 24, 3)

        full_pose = torch.cat([global_orient, body_pose], dim=1).reshape(batch, 24, 3)
        rotations = axis_angle_to_matrix(full_pose)  # (B, 24, 3, 3)
        eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
        pose_feature = (rotations[:, 1:] - eye).reshape(batch, -1)  # (B, 207)
        posed = shaped + (pose_feature @ self.posedirs).reshape(batch, vertex_count, 3)

        # forward kinematics: world rotation and position of every joint
        relative = joints_rest.clone()
        relative[:, 1:] -= joints_rest[:, self.parents[1:]]
        world_rot = [rotations[:, 0]]
        world_pos = [joints_rest[:, 0]]
        for j in range(1, 24):
            parent = self.parents[j]
            world_rot.append(world_rot[parent] @ rotations[:, j])
            world_pos.append(world_pos[parent] + (world_rot[parent] @ relative[:, j, :, None])[..., 0])
        world_rot_t = torch.stack(world_rot, dim=1)  # (B, 24, 3, 3)
        joints = torch.stack(world_pos, dim=1)  # (B, 24, 3)
        # skinning transforms map rest-pose points: x -> R_j (x - J_j^rest) + J_j^posed
        offsets = joints - (world_rot_t @ joints_rest[..., None])[..., 0]
        per_joint = torch.cat([world_rot_t.reshape(batch, 24, 9), offsets], dim=-1)  # (B, 24, 12)
        blended = self.lbs_weights @ per_joint  # (B, V, 12): one matmul instead of V tiny ones
        blended_rot = blended[..., :9].reshape(batch, vertex_count, 3, 3)
        vertices = (blended_rot * posed[:, :, None, :]).sum(-1) + blended[..., 9:]
        return BodyOutput(vertices=vertices + transl[:, None], joints=joints + transl[:, None])
