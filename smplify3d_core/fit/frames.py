"""Fitted bodies moved rigidly into another frame (e.g. from the camera optical frame to ``odom``).

SMPL rotates the whole body about the rest pelvis ``J0(betas)`` (joint 0 of the shaped rest mesh),
so a body with root rotation ``R`` and translation ``t`` has its pelvis at ``J0 + t`` and its
vertices at ``R (v - J0) + J0 + t`` (``v``: the posed mesh in the root's own axes). Moving the body
by ``T = [R_T | t_T]`` therefore gives the parameters

* ``R' = R_T R`` (global_orient, axis-angle);
* ``t' = R_T (J0 + t) + t_T - J0`` (the pelvis moves like any point, the shape's ``J0`` stays);
* ``body_pose`` and ``betas`` unchanged,

and the mesh of ``(R', body_pose, betas, t')`` is the moved mesh exactly.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np
import torch

from smplify3d_core.fit.icp import apply_rigid_to_smpl

__all__ = ["transform_fit_result", "transform_points_torch", "transform_smpl_params"]


def _rigid(T) -> torch.Tensor:
    """(4, 4) float64 tensor of ``T`` (array-like); ValueError when it is not a finite 4x4."""
    matrix = torch.as_tensor(np.asarray(T, dtype=np.float64))
    if matrix.shape != (4, 4) or not bool(torch.isfinite(matrix).all()):
        raise ValueError(f"expected a finite (4, 4) rigid transform, got shape {tuple(matrix.shape)}")
    return matrix


def transform_points_torch(T, points: torch.Tensor) -> torch.Tensor:
    """``points`` (..., 3) metres moved by ``T`` (4, 4): ``R p + t``, in the points' dtype and device."""
    matrix = _rigid(T).to(points.device)
    moved = points.double() @ matrix[:3, :3].T + matrix[:3, 3]
    return moved.to(points.dtype)


def transform_smpl_params(T, global_orient: torch.Tensor, transl: torch.Tensor,
                          rest_pelvis: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The SMPL root parameters of bodies moved by ``T``.

    T: (4, 4) rigid transform, old frame -> new frame (metres); global_orient: (B, 3) axis-angle,
    rad; transl: (B, 3) SMPL translation, m; rest_pelvis: (B, 3) ``J0(betas)`` of each body, m
    (:meth:`~smplify3d_core.fit.optimizer.SMPLify3D.rest_pelvis`). Returns (global_orient (B, 3),
    transl (B, 3)) in the inputs' dtype: ``R' = R_T R``, ``t' = R_T (J0 + t) + t_T - J0``
    (:func:`~smplify3d_core.fit.icp.apply_rigid_to_smpl`, in float64).
    """
    matrix = _rigid(T).to(global_orient.device)
    batch = global_orient.shape[0]
    orient, moved = apply_rigid_to_smpl(global_orient.double(), transl.double(),
                                        rest_pelvis.double().to(transl.device),
                                        matrix[:3, :3].expand(batch, 3, 3), matrix[:3, 3].expand(batch, 3))
    return orient.to(global_orient.dtype), moved.to(transl.dtype)

def transform_fit_result(result, T, rest_pelvis: torch.Tensor):
    """A copy of ``result`` (a :class:`~smplify3d_core.fit.optimizer.FitResult`, or any dataclass with
    ``global_orient`` (B, 3), ``transl`` (B, 3), ``joints`` (B, J, 3) and ``vertices`` (B, V, 3)) with
    its bodies moved by ``T`` (4, 4, old frame -> new frame, metres).

    rest_pelvis: (B, 3) ``J0(betas)`` of the result's shapes, m. Pose, shape, fit-quality numbers,
    flags and the verdict are shared with ``result`` (not frame-dependent); the input is not changed.
    """
    global_orient, transl = transform_smpl_params(T, result.global_orient, result.transl, rest_pelvis)
    return dataclasses.replace(result, global_orient=global_orient, transl=transl,
                               joints=transform_points_torch(T, result.joints),
                               vertices=transform_points_torch(T, result.vertices))
