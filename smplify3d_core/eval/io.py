"""File helpers of the dataset readers: JSON, ``.pcd`` point clouds, images, keypoint and
initial-estimate files, and :class:`DatasetError`, the error they raise.

Keypoint files (written by ``smplify3d keypoints``) use the research demo layout
``{"camera": name, <tracking_id>: 17 x [x, y, score, lidar_visibility]}``; initial-estimate files
use ``{"persons": {<tracking_id>: {global_orient 3, body_pose 69, betas 10, transl 3}}}`` with the
parameters in the camera frame — the place where a CLIFF pre-pass (or any other image-only
method) puts its output. Points are metres, images RGB uint8.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from smplify3d_core.types import SMPLParams


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file."""


def read_json(path: Path):
    """The parsed content of the JSON file ``path``; a missing or invalid file raises DatasetError naming it."""
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
    """An init_smpl.json-style file's content from {tid: SMPLParams} (the inverse of :func:`parse_inits`)."""
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
    """(H, W, 3) uint8 RGB pixels of an image file; an unreadable file raises DatasetError naming it."""
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
