"""Common pieces of the dataset readers (HumanM3, SLOPER4D, research demo format).

A reader scans a dataset folder into :class:`FrameRef` records (one per camera frame) and loads
each one into a :class:`~smplify3d_core.types.FrameObservation` whose persons carry the box, the
COCO-17 keypoints with the per-keypoint LiDAR visibility, the LiDAR points in the camera frame and
the initial SMPL estimate, and whose ground truth is either

* ``person.pose3d`` — (15, 3) HumanM3 joints in the camera frame (HumanM3, demo folders without
  SMPL truth), evaluated with MPJPE / PA-MPJPE over the 15 joints regressed from the fitted mesh, or
* ``frame.truth[tracking_id]`` — a :class:`~smplify3d_core.types.PersonTruth` with SMPL vertices and
  the 24 SMPL joints (SLOPER4D, simulator demo folders), evaluated with PVE, MPERE, MPJPE, PA-MPJPE.

Problems are reported, never silently skipped: a whole sequence or frame that cannot be used
raises :class:`DatasetError` (the evaluation records the message and goes on with the rest), a
single unusable person is dropped with a note returned by ``load_frame``.

The readers' file helpers (JSON, ``.pcd``, images, keypoint and initial-estimate files) are in
:mod:`smplify3d_core.eval.io`; :func:`smplify3d_core.eval.registry.open_dataset` picks a reader
by dataset name.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy.spatial.transform import Rotation

from smplify3d_core.eval.io import DatasetError
from smplify3d_core.types import FrameObservation, PinholeCamera, SMPLParams


@dataclass
class FrameRef:
    """One frame of a dataset: its sequence, its id and the files the reader needs (``files``)."""

    sequence: str
    frame_id: str
    index: int = 0
    files: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.sequence}/{self.frame_id}"


class DatasetReader(ABC):
    """Base of the readers. Subclasses fill ``scan`` and ``load_frame``.

    truth_kind: ``"joints15"`` (HumanM3 joints) or ``"smpl"`` (SMPL meshes) or ``"auto"`` (per person).
    frame_rate_hz: the LiDAR's frame rate; a frame's stamp is its index in the sequence over it
    (tracked evaluation).
    issues: messages about sequences/frames the scan could not use (each names the file or folder).
    """

    name = "dataset"
    truth_kind = "auto"
    frame_rate_hz = 10.0

    def __init__(self, root) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset folder {self.root} does not exist")
        self.issues: List[str] = []
        self._frames: Optional[List[FrameRef]] = None

    # -- scanning -----------------------------------------------------------------------------
    @abstractmethod
    def scan(self) -> List[FrameRef]:
        """The dataset's frames, in order; sequence-level problems are appended to ``issues``."""

    def frames(self) -> List[FrameRef]:
        """All usable frames (scanned once); sequence-level problems land in ``issues``."""
        if self._frames is None:
            self._frames = self.scan()
        return self._frames

    # -- per frame ------------------------------------------------------------------------------
    @abstractmethod
    def load_frame(self, ref: FrameRef, load_image: bool = False, require_keypoints: bool = True
                   ) -> Tuple[FrameObservation, List[str]]:
        """(frame, notes): the frame's observations; notes name the persons dropped and why."""

    @abstractmethod
    def keypoints_done(self, ref: FrameRef) -> bool:
        """Whether the keypoint pre-pass already wrote this frame's keypoints."""

    @abstractmethod
    def write_keypoints(self, ref: FrameRef, camera_name: str, keypoints: Dict[str, np.ndarray]) -> Path:
        """Store the frame's keypoints (tracking id -> (17, 4) x, y, score, LiDAR flag) in the dataset's layout."""

    @abstractmethod
    def keypoint_file(self, ref: FrameRef) -> Path:
        """The file that holds (or will hold) the frame's keypoints."""

    def flush(self) -> None:
        """Write keypoint files still held in memory (SLOPER4D); a no-op for per-frame files."""

    def camera_name(self, ref: FrameRef) -> str:
        """The camera's name written into keypoint files."""
        return str(ref.files.get("camera", ref.sequence))


# ---------------------------------------------------------------------------- geometry helpers
def transform_smpl(params: SMPLParams, T: np.ndarray, body) -> SMPLParams:
    """SMPL parameters of the same body after the rigid motion ``T`` (4, 4) of its frame.

    SMPL rotates about the rest pelvis J0(betas): V = R (X - J0) + J0 + t, so the moved body has
    R' = R_T R and t' = R_T (J0 + t) + t_T - J0. Exact (pose blend shapes ignore the root).
    """
    import torch

    with torch.no_grad():
        rest = body(betas=torch.as_tensor(params.betas[None], dtype=body.v_template.dtype, device=body.v_template.device))
        j0 = rest.joints[0, 0].double().cpu().numpy()
    R_T, t_T = np.asarray(T)[:3, :3], np.asarray(T)[:3, 3]
    orient = Rotation.from_matrix(R_T @ Rotation.from_rotvec(params.global_orient).as_matrix()).as_rotvec()
    transl = R_T @ (j0 + params.transl) + t_T - j0
    return SMPLParams(orient, params.body_pose.copy(), params.betas.copy(), transl)


def box_from_joints(uv: np.ndarray, camera: PinholeCamera, enlarge_x: float = 0.35,
                    enlarge_y: float = 0.15) -> Optional[np.ndarray]:
    """The bbox (x, y, w, h) of projected joints, enlarged (35% in x and 15% in y about its centre,
    the research rule) and clipped to the image; None when no joint lands inside the image."""
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    finite = np.all(np.isfinite(uv), axis=1)
    inside = finite & (uv[:, 0] >= 0) & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] < camera.height)
    if not inside.any():
        return None
    x0, y0 = uv[finite].min(axis=0)
    x1, y1 = uv[finite].max(axis=0)
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * (1 + enlarge_x), (y1 - y0) * (1 + enlarge_y)
    bx0, by0 = max(0.0, cx - w / 2), max(0.0, cy - h / 2)
    bx1, by1 = min(float(camera.width), cx + w / 2), min(float(camera.height), cy + h / 2)
    if bx1 - bx0 < 1 or by1 - by0 < 1:
        return None
    return np.array([bx0, by0, bx1 - bx0, by1 - by0])
