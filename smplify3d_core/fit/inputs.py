"""Batched fitting inputs built from per-person observations, with input checks and flags."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from smplify3d_core.geometry.nearest import pad_point_sets
from smplify3d_core.types import PersonObservation, PinholeCamera


MAX_INIT_DEPTH_M = 500.0  # an initial estimate farther than this (or behind the camera) is unusable


@dataclass
class FitInputs:
    """Everything the optimizer needs, batched over B persons (camera frame, metres, pixels).

    init_global_orient (B,3), init_body_pose (B,69), init_betas (B,10), init_transl (B,3);
    keypoints (B,17,2) px; confidence (B,17); lidar_flag (B,17); points (B,M,3) with
    points_mask (B,M); K (B,3,3); sensor_origin (3,) the LiDAR origin in the camera frame;
    flags: per person, the input problems found (e.g. "no_lidar_points");
    usable: (B,) bool, False when the person cannot be fitted at all (e.g. no initial estimate).
    """

    init_global_orient: torch.Tensor
    init_body_pose: torch.Tensor
    init_betas: torch.Tensor
    init_transl: torch.Tensor
    keypoints: torch.Tensor
    confidence: torch.Tensor
    lidar_flag: torch.Tensor
    points: torch.Tensor
    points_mask: torch.Tensor
    K: torch.Tensor
    sensor_origin: torch.Tensor
    flags: list = field(default_factory=list)
    usable: torch.Tensor = None

    @property
    def batch_size(self) -> int:
        return int(self.init_transl.shape[0])

    @classmethod
    def from_observations(
        cls,
        persons: list[PersonObservation],
        camera: PinholeCamera,
        T_cam_lidar: np.ndarray | None = None,
        device="cpu",
        dtype=torch.float32,
    ) -> "FitInputs":
        """Batch ``persons`` (each must carry an initial estimate ``init``).

        Input problems never raise for one person; they are recorded in ``flags``:
        non-finite keypoints get confidence 0 (``non_finite_keypoints``); non-finite points and
        points at or behind the camera are dropped (``non_finite_points``,
        ``points_behind_camera``); a person without points is flagged ``no_lidar_points``; a
        missing or non-finite initial estimate, or one behind the camera or farther than
        ``MAX_INIT_DEPTH_M``, makes the person unusable (``invalid_init``).
        """
        if not persons:
            raise ValueError("no persons to fit")
        flags, inits, keypoints, confidence, lidar, clouds, usable = [], [], [], [], [], [], []
        for person in persons:
            person_flags = []
            kp = np.array(person.keypoints, dtype=np.float64)
            bad_kp = ~np.all(np.isfinite(kp), axis=1)
            if bad_kp.any():
                person_flags.append("non_finite_keypoints")
                kp[bad_kp] = 0.0
            conf = np.clip(kp[:, 2], 0.0, 1.0)
            vis = np.nan_to_num(np.clip(person.lidar_visibility, 0.0, 1.0))
            points = person.points
            finite = np.all(np.isfinite(points), axis=1)
            if not finite.all():
                person_flags.append("non_finite_points")
            in_front = finite & (np.nan_to_num(points[:, 2], nan=-1.0) > 0)
            if (finite & ~in_front).any():
                person_flags.append("points_behind_camera")
            points = points[in_front]
            if len(points) == 0:
                person_flags.append("no_lidar_points")
            init = person.init
            ok = init is not None and all(
                np.all(np.isfinite(v)) for v in (init.global_orient, init.body_pose, init.betas, init.transl)
            ) and 0.0 < init.transl[2] <= MAX_INIT_DEPTH_M and np.all(np.abs(init.transl[:2]) <= MAX_INIT_DEPTH_M)
            if not ok:
                person_flags.append("invalid_init")
                init_arrays = (np.zeros(3), np.zeros(69), np.zeros(10), np.array([0.0, 0.0, 5.0]))
            else:
                init_arrays = (init.global_orient, init.body_pose, init.betas, init.transl)
            flags.append(person_flags)
            inits.append(init_arrays)
            keypoints.append(kp[:, :2])
            confidence.append(conf)
            lidar.append(vis)
            clouds.append(points)
            usable.append(ok)

        def stack(arrays):
            return torch.as_tensor(np.stack(arrays), dtype=dtype, device=device)

        points, mask = pad_point_sets(clouds, device=device, dtype=dtype)
        origin = np.zeros(3) if T_cam_lidar is None else np.asarray(T_cam_lidar, dtype=np.float64)[:3, 3]
        return cls(
            init_global_orient=stack([i[0] for i in inits]),
            init_body_pose=stack([i[1] for i in inits]),
            init_betas=stack([i[2] for i in inits]),
            init_transl=stack([i[3] for i in inits]),
            keypoints=stack(keypoints),
            confidence=stack(confidence),
            lidar_flag=stack(lidar),
            points=points,
            points_mask=mask,
            K=torch.as_tensor(camera.K, dtype=dtype, device=device).expand(len(persons), 3, 3).clone(),
            sensor_origin=torch.as_tensor(origin, dtype=dtype, device=device),
            flags=flags,
            usable=torch.as_tensor(usable, dtype=torch.bool, device=device),
        )
