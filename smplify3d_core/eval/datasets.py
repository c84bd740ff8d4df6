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

Keypoint files (written by ``smplify3d keypoints``) use the research demo layout
``{"camera": name, <tracking_id>: 17 x [x, y, score, lidar_visibility]}``; initial-estimate files
use ``{"persons": {<tracking_id>: {global_orient 3, body_pose 69, betas 10, transl 3}}}`` with the
parameters in the camera frame — the place where a CLIFF pre-pass (or any other image-only
method) puts its output.
"""
from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy.spatial.transform import Rotation

from smplify3d_core.types import FrameObservation, PinholeCamera, SMPLParams

DATASETS = ("humanm3", "sloper4d", "demo")


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file."""


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
    issues: messages about sequences/frames the scan could not use (each names the file or folder).
    """

    name = "dataset"
    truth_kind = "auto"

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


# ---------------------------------------------------------------------------- small file helpers
def read_json(path: Path):
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path} is not valid JSON: {error}") from error


def write_json_atomic(path: Path, payload) -> Path:
    """Write JSON through a temporary file and a rename (an interrupted write leaves no half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)
    return path


def keypoints_payload(camera_name: str, keypoints: Dict[str, np.ndarray]) -> dict:
    """{"camera": name, tid: 17 x [x, y, score, lidar_visibility]} from {tid: (17, 4)}."""
    payload = {"camera": camera_name}
    for tid, kp in keypoints.items():
        kp = np.asarray(kp, dtype=np.float64)
        if kp.shape != (17, 4):
            raise ValueError(f"keypoints of {tid!r} must be (17, 4), got {kp.shape}")
        payload[str(tid)] = kp.tolist()
    return payload


def parse_keypoints(payload: dict, path: Path) -> Dict[str, np.ndarray]:
    """{tid: (17, 4)} from a keypoint file's content; a malformed entry raises naming ``path``."""
    out = {}
    for tid, value in payload.items():
        if tid == "camera":
            continue
        kp = np.asarray(value, dtype=np.float64)
        if kp.shape != (17, 4):
            raise DatasetError(f"{path}: keypoints of {tid!r} must be 17 x [x, y, score, lidar_visibility], got shape {kp.shape}")
        out[str(tid)] = kp
    return out


def parse_inits(payload: dict, path: Path) -> Dict[str, SMPLParams]:
    """{tid: SMPLParams} from an init_smpl.json-style file."""
    persons = payload.get("persons", payload) if isinstance(payload, dict) else None
    if not isinstance(persons, dict):
        raise DatasetError(f"{path} must hold {{\"persons\": {{tracking_id: SMPL parameters}}}}")
    try:
        return {str(tid): SMPLParams.from_dict(value) for tid, value in persons.items()}
    except (ValueError, TypeError) as error:
        raise DatasetError(f"{path}: {error}") from error


def inits_payload(sequence: str, frame_id: str, inits: Dict[str, SMPLParams]) -> dict:
    return {"sequence": sequence, "time": frame_id, "persons": {tid: p.to_dict() for tid, p in inits.items()}}


def image_size(path: Path) -> Tuple[int, int]:
    """(width, height) from the image header (no decoding)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return int(image.size[0]), int(image.size[1])
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path} is not a readable image: {error}") from error


def read_image_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"{path} is not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_pcd(path: Path) -> np.ndarray:
    """(N, 3) float64 points of a .pcd file (open3d); non-finite points removed."""
    import open3d as o3d

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} does not exist")
    cloud = o3d.io.read_point_cloud(str(path), format="pcd")
    points = np.asarray(cloud.points, dtype=np.float64).reshape(-1, 3)
    return points[np.all(np.isfinite(points), axis=1)]


def write_pcd(path: Path, points: np.ndarray) -> Path:
    """Write (N, 3) points as a binary .pcd (open3d); an empty cloud is written as an ASCII header."""
    import open3d as o3d

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(points) == 0:
        path.write_text("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\n"
                        "TYPE F F F\nCOUNT 1 1 1\nWIDTH 0\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 0\nDATA ascii\n")
        return path
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    if not o3d.io.write_point_cloud(str(path), cloud, write_ascii=False):
        raise DatasetError(f"could not write {path}")
    return path


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


def box_from_joints(uv: np.ndarray, camera: PinholeCamera, enlarge_x: float = 0.35, enlarge_y: float = 0.15) -> Optional[np.ndarray]:
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


def open_dataset(name: str, root, body_loader=None, sequences=None) -> DatasetReader:
    """A reader for ``name`` (humanm3, sloper4d, demo) over ``root``.

    body_loader: callable gender -> SMPLBody, needed by SLOPER4D for its SMPL ground truth.
    sequences: optional subset of sequence names.
    """
    if name == "humanm3":
        from smplify3d_core.eval.humanm3 import HumanM3Reader

        return HumanM3Reader(root, sequences=sequences)
    if name == "sloper4d":
        from smplify3d_core.eval.sloper4d import Sloper4DReader

        return Sloper4DReader(root, body_loader=body_loader, sequences=sequences)
    if name == "demo":
        from smplify3d_core.eval.demo_dataset import DemoReader

        return DemoReader(root, sequences=sequences)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
