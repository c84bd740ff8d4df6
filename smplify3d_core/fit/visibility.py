"""Body-part visibility filter and the visible mesh surface (the SMPLify-3D research method).

A keypoint is image-visible when its confidence reaches thr = min(joint_conf_threshold,
the person's highest confidence), LiDAR-visible when its LiDAR flag reaches thr; a body part is
visible when all its keypoints are (the COCO-17 keypoints of each of the 18 parts are
:data:`~smplify3d_core.body.tables.PART_KEYPOINTS`). The visible surface is the set of vertices
of the uniform subset (~2000 farthest-point samples of the template) that belong to a
LiDAR-visible part and face the sensor (normal · unit vector to the sensor above the
dot-product threshold; −1 keeps all).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from smplify3d_core.body.tables import BODY_PARTS, PART_CONTROL_JOINT, PART_KEYPOINTS, BodyTables

# (18, 17) bool: which COCO keypoints each part needs
PART_KEYPOINT_MATRIX = np.zeros((len(BODY_PARTS), 17), dtype=bool)
for _index, _part in enumerate(BODY_PARTS):
    PART_KEYPOINT_MATRIX[_index, list(PART_KEYPOINTS[_part])] = True


@dataclass
class Visibility:
    """Per person: image_keypoints, lidar_keypoints (B, 17) bool; image_parts, lidar_parts (B, 18) bool."""

    image_keypoints: torch.Tensor
    lidar_keypoints: torch.Tensor
    image_parts: torch.Tensor
    lidar_parts: torch.Tensor

    def lidar_part_names(self, person: int) -> list[str]:
        return [BODY_PARTS[i] for i in torch.nonzero(self.lidar_parts[person]).flatten().tolist()]


def _parts_from_keypoints(keypoints: torch.Tensor) -> torch.Tensor:
    needed = torch.as_tensor(PART_KEYPOINT_MATRIX, device=keypoints.device)  # (18, 17)
    # a part is visible when none of its needed keypoints is invisible
    missing = (~keypoints[:, None, :]) & needed[None]
    return ~missing.any(-1)


def keypoint_visibility(confidence: torch.Tensor, lidar_flag: torch.Tensor, joint_conf_threshold: float) -> Visibility:
    """confidence, lidar_flag: (B, 17) in [0, 1] -> :class:`Visibility`."""
    threshold = torch.minimum(
        torch.full_like(confidence[:, :1], joint_conf_threshold), confidence.amax(1, keepdim=True)
    )
    image = confidence >= threshold
    lidar = lidar_flag >= threshold
    return Visibility(image, lidar, _parts_from_keypoints(image), _parts_from_keypoints(lidar))


def all_visible(batch: int, device="cpu") -> Visibility:
    """Visibility with every keypoint and part visible (the "no visibility filter" ablation)."""
    keypoints = torch.ones(batch, 17, dtype=torch.bool, device=device)
    parts = torch.ones(batch, len(BODY_PARTS), dtype=torch.bool, device=device)
    return Visibility(keypoints, keypoints.clone(), parts, parts.clone())


def occluded_joint_weights(image_parts: torch.Tensor) -> torch.Tensor:
    """(B, 18) image-visible parts -> (B, 23) weights on body-pose joints (SMPL id − 1) of invisible parts."""
    weights = torch.zeros(image_parts.shape[0], 23, dtype=torch.float32, device=image_parts.device)
    for part, joint in PART_CONTROL_JOINT.items():
        invisible = ~image_parts[:, BODY_PARTS.index(part)]
        weights[:, joint - 1] = torch.maximum(weights[:, joint - 1], invisible.float())
    return weights


class VisibleSurface:
    """Computes the visible-surface mask over the uniform vertex subset.

    tables: the model's tables; faces: (F, 3). ``mask(vertices, lidar_parts, sensor_origin,
    dot_threshold)`` returns (B, M) bool over ``subset`` (M vertex ids).
    """

    def __init__(self, tables: BodyTables, faces: np.ndarray, device="cpu") -> None:
        subset = tables.uniform_subset
        self.subset = torch.as_tensor(subset, dtype=torch.long, device=device)
        self.subset_part = torch.as_tensor(tables.vertex_part[subset], dtype=torch.long, device=device)
        # the normals of the subset only need the faces around it: (face, corner) pairs whose corner is a
        # subset vertex, as rows of those faces and the vertex's place in the subset
        faces = np.asarray(faces, dtype=np.int64)
        place = np.full(int(faces.max()) + 1, -1, dtype=np.int64)
        place[subset] = np.arange(len(subset))
        face_rows, corners = np.nonzero(place[faces] >= 0)
        touching, pair_face = np.unique(face_rows, return_inverse=True)
        self._touching_faces = torch.as_tensor(faces[touching], dtype=torch.long, device=device)  # (F', 3)
        self._pair_face = torch.as_tensor(pair_face, dtype=torch.long, device=device)  # (P,) row of _touching_faces
        self._pair_place = torch.as_tensor(place[faces[face_rows, corners]], dtype=torch.long, device=device)  # (P,)

    def subset_normals(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, M, 3) the area-weighted unit normals (the sum of the adjacent faces' edge cross products,
        normalised) of the subset's vertices of the mesh ``vertices`` (B, V, 3), from the faces around the
        subset only."""
        faces = self._touching_faces
        v0, v1, v2 = vertices[:, faces[:, 0]], vertices[:, faces[:, 1]], vertices[:, faces[:, 2]]
        face_normals = torch.cross(v1 - v0, v2 - v0, dim=-1)
        normals = vertices.new_zeros(vertices.shape[0], len(self.subset), 3)
        normals.index_add_(1, self._pair_place, face_normals[:, self._pair_face])
        return torch.nn.functional.normalize(normals, dim=-1)

    @torch.no_grad()
    def mask(self, vertices: torch.Tensor, lidar_parts: torch.Tensor, sensor_origin: torch.Tensor,
             dot_threshold: float) -> torch.Tensor:
        in_part = torch.gather(lidar_parts, 1, self.subset_part[None].expand(lidar_parts.shape[0], -1))
        if dot_threshold <= -1.0:
            return in_part
        normals = self.subset_normals(vertices)
        to_sensor = torch.nn.functional.normalize(sensor_origin.reshape(-1, 1, 3) - vertices[:, self.subset], dim=-1)
        return in_part & ((normals * to_sensor).sum(-1) > dot_threshold)
