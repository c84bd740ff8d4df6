"""Is a fitted body believable? Checks run after the fit, batched over the persons of a frame.

The optimizer always returns a body when its inputs were usable; that body can still be wrong
(a camera_info with a bad focal length, a clutter cloud around the person, a cloud in the wrong
unit, an extrinsic that is off). The verdict measures each fitted person and compares the
numbers with the thresholds of :class:`VerdictConfig` (the ``verdict.*`` settings). A check that
fails sets the person's ``valid`` False and adds its flag:

==============================  =================================================  ==============================
measure                         definition                                         flag when outside its limits
==============================  =================================================  ==============================
``reprojection_error_px``       the fit's mean 2D distance between the projected   ``reprojection_error_high``
                                COCO joints and the confident (image-visible)
                                keypoints, pixels
``point_residual_m``            median distance from the person's LiDAR points to  ``point_residual_high``
                                the nearest vertex of the fitted mesh, metres
``height_m``                    standing height of the fitted shape: the extent    ``implausible_height``
                                of the T-posed mesh (betas only, zero pose) along
                                the body's vertical axis, metres
``depth_offset_m``              range of the fitted mesh's centroid from the       ``depth_disagrees_with_points``
                                LiDAR minus the median range of the person's
                                points, metres (signed; a few cm to ~0.15 m
                                behind is normal: the LiDAR sees the front)
``range_m``                     distance of the fitted mesh's centroid from the    ``out_of_range``
                                LiDAR origin, metres
==============================  =================================================  ==============================

The height is taken from the T-pose rather than from the posed mesh so that crouching, sitting
or reaching people are judged by their shape alone (the posed extent depends on the pose).
The range is measured from the LiDAR because that is the sensor whose points place the body;
the depth offset compares ranges rather than 3D positions because a partly seen person's
points cover only the seen part (legs behind a car): their median sits away from the body's
centroid in height, but not in range.

Persons without LiDAR points: the LiDAR checks (residual, depth offset) cannot run and their
measures are NaN. With ``require_lidar_points`` (the default) such a person is not valid — its
position comes from the image-only initial estimate and no sensor confirms it; it keeps the
``no_lidar_points`` flag the inputs gave it. Otherwise it is judged by the other checks alone.
Persons that could not be fitted (``fitted`` False) are not judged (they are not valid anyway).

No ROS here; tensors are (B, ...) on any device, measures come back on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch

from smplify3d_core.geometry.nearest import nearest_indices
from smplify3d_core.typed_config import setting

#: The flag each check adds when it fails.
FLAGS = {
    "reprojection": "reprojection_error_high",
    "residual": "point_residual_high",
    "height": "implausible_height",
    "depth": "depth_disagrees_with_points",
    "range": "out_of_range",
}


@dataclass
class VerdictConfig:
    """When a fitted body is published as valid (see ``smplify3d_core/fit/verdict.py``; each failed check
    sets valid false and adds its flag). Defaults: measured on good synthetic frames, with margin."""

    max_reprojection_error_px: float = setting(
        30.0, "mean distance of the projected joints to the confident keypoints above this, pixels: "
              "reprojection_error_high", min=0)
    max_point_residual_m: float = setting(
        0.08, "median distance of the person's LiDAR points to the fitted mesh above this, metres: "
              "point_residual_high", min=0)
    min_height_m: float = setting(1.3, "standing (T-pose) height of the fitted shape below this, metres: "
                                       "implausible_height", min=0)
    max_height_m: float = setting(2.15, "standing (T-pose) height of the fitted shape above this, metres: "
                                        "implausible_height", min=0)
    max_depth_offset_m: float = setting(
        0.5, "range of the body centroid minus the median range of its points beyond +-this, metres: "
              "depth_disagrees_with_points", min=0)
    min_range_m: float = setting(0.5, "body centroid nearer than this to the LiDAR, metres: out_of_range", min=0)
    max_range_m: float = setting(50.0, "body centroid farther than this from the LiDAR, metres: out_of_range", min=0)
    require_lidar_points: bool = setting(
        True, "a person without LiDAR points is not valid (its depth is the image-only estimate's, unconfirmed); "
              "false: judged by the image checks alone")


@dataclass
class VerdictMeasures:
    """The numbers the verdict judged, (B,) tensors on the CPU (NaN where a check could not run).

    reprojection_error_px, point_residual_m, height_m, depth_offset_m, range_m: see the module
    docstring; has_points: (B,) bool, the person had LiDAR points; passed: (B,) bool, every check
    that ran passed (and the points requirement); flags: per person, the flags of the failed checks.
    """

    reprojection_error_px: torch.Tensor
    point_residual_m: torch.Tensor
    height_m: torch.Tensor
    depth_offset_m: torch.Tensor
    range_m: torch.Tensor
    has_points: torch.Tensor
    passed: torch.Tensor
    flags: List[List[str]]


@torch.no_grad()
def measure(vertices: torch.Tensor, rest_vertices: torch.Tensor, points: torch.Tensor, points_mask: torch.Tensor,
            sensor_origin: torch.Tensor, up_axis: int = 1) -> dict:
    """The geometric measures of a batch of fitted persons.

    vertices: (B, V, 3) fitted meshes (camera frame, m); rest_vertices: (B, V, 3) the same shapes
    in the zero pose (model frame, ``up_axis`` vertical: y for SMPL); points: (B, M, 3) each
    person's LiDAR points (camera frame) with points_mask (B, M); sensor_origin: (3,) the LiDAR
    origin in the camera frame. Returns {name: (B,) tensor} on the tensors' device:
    point_residual_m, height_m, depth_offset_m, range_m (NaN residual and offset without points).
    """
    vertices = vertices.to(points.device, points.dtype)
    rest = rest_vertices.to(points.device, points.dtype)
    origin = sensor_origin.to(points.device, points.dtype).reshape(1, 3)
    nan = torch.full(vertices.shape[:1], float("nan"), dtype=points.dtype, device=points.device)
    has_points = points_mask.any(1)

    up = rest[..., up_axis]
    height = up.amax(1) - up.amin(1)
    centroid = vertices.mean(1)
    body_range = (centroid - origin).norm(dim=-1)

    residual, offset = nan.clone(), nan.clone()
    if bool(has_points.any()):
        nearest = nearest_indices(points, vertices)  # (B, M): nearest fitted vertex of each point
        gathered = torch.gather(vertices, 1, nearest[..., None].expand(-1, -1, 3))
        distance = (points - gathered).norm(dim=-1)
        point_range = (points - origin).norm(dim=-1)
        residual = torch.where(has_points, _masked_median(distance, points_mask), nan)
        offset = torch.where(has_points, body_range - _masked_median(point_range, points_mask), nan)
    return {"point_residual_m": residual, "height_m": height, "depth_offset_m": offset, "range_m": body_range}


def _masked_median(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, M) values, (B, M) mask -> (B,) median of the masked entries (the lower middle one; NaN when none)."""
    filled = torch.where(mask, values, torch.full_like(values, float("inf")))
    ordered = filled.sort(dim=1).values
    count = mask.sum(1)
    index = ((count - 1).clamp(min=0) // 2)[:, None]
    median = ordered.gather(1, index)[:, 0]
    return torch.where(count > 0, median, torch.full_like(median, float("nan")))


def judge(measures: dict, reprojection_error_px: torch.Tensor, has_points: torch.Tensor, fitted: torch.Tensor,
          config: VerdictConfig) -> VerdictMeasures:
    """Compare ``measures`` (from :func:`measure`) and the fit's reprojection error with ``config``.

    has_points, fitted: (B,) bool. A check whose measure is NaN (no points) does not run; a
    non-finite measure that should exist (a body that is not finite) fails. Persons not
    ``fitted`` are not judged: they get no flag and ``passed`` False.
    """
    cpu = {k: v.detach().cpu().double() for k, v in measures.items()}
    reprojection = reprojection_error_px.detach().cpu().double()
    has_points = has_points.detach().cpu().bool()
    fitted = fitted.detach().cpu().bool()

    def outside(value: torch.Tensor, low: float, high: float) -> torch.Tensor:
        return ~((value >= low) & (value <= high))  # NaN and inf are outside

    lidar = has_points
    failed = {
        "reprojection": outside(reprojection, 0.0, config.max_reprojection_error_px),
        "residual": lidar & outside(cpu["point_residual_m"], 0.0, config.max_point_residual_m),
        "height": outside(cpu["height_m"], config.min_height_m, config.max_height_m),
        "depth": lidar & outside(cpu["depth_offset_m"], -config.max_depth_offset_m, config.max_depth_offset_m),
        "range": outside(cpu["range_m"], config.min_range_m, config.max_range_m),
    }
    flags: List[List[str]] = []
    passed = fitted.clone()
    for b in range(len(fitted)):
        person = [FLAGS[name] for name, bad in failed.items() if bool(bad[b])] if bool(fitted[b]) else []
        flags.append(person)
        if person or (config.require_lidar_points and not bool(has_points[b])):
            passed[b] = False
    return VerdictMeasures(reprojection_error_px=reprojection.float(), point_residual_m=cpu["point_residual_m"].float(),
                           height_m=cpu["height_m"].float(), depth_offset_m=cpu["depth_offset_m"].float(),
                           range_m=cpu["range_m"].float(), has_points=has_points, passed=passed, flags=flags)


def apply_verdict(result, inputs, rest_vertices: torch.Tensor, config: VerdictConfig) -> VerdictMeasures:
    """Judge every person of ``result`` (a :class:`~smplify3d_core.fit.optimizer.FitResult` of ``inputs``)
    and record it there: ``result.verdict`` = the measures, ``valid`` &= passed, the failed checks'
    flags appended to ``result.flags``. rest_vertices: (B, V, 3) the fitted shapes in the zero pose."""
    fitted = result.fitted
    points, mask = inputs.points, inputs.points_mask
    measures = measure(torch.nan_to_num(result.vertices), rest_vertices, points, mask, inputs.sensor_origin)
    measures = {k: torch.where(fitted.to(v.device), v, torch.full_like(v, float("nan"))) for k, v in measures.items()}
    verdict = judge(measures, result.reprojection_error_px, mask.any(1), fitted, config)
    result.verdict = verdict
    result.valid = result.valid.cpu() & verdict.passed
    for b, person in enumerate(verdict.flags):
        result.flags[b].extend(flag for flag in person if flag not in result.flags[b])
    return verdict
