"""Scene folders: the research code's demo format (``data/demo``) plus the files this project adds.

A scene folder holds

* ``data.pkl`` — list of per-person dicts {sequence, time, tracking_id, pose3d (15,3) m,
  bbox2d_xywh [4 ints], human_points (N,3) m, img_file}; points and joints in the camera frame;
* ``2d_keypoints.json`` — {"camera": name, <tracking_id>: 17 × [x, y, score, lidar_visibility]};
* the image named by ``img_file``;
* ``camera.json`` — {"camera", "K" 3×3, "width", "height", "T_cam_lidar" 4×4};
* optional ``init_smpl.json`` — {"persons": {<tracking_id>: SMPL parameters}} (initial estimates);
* optional ``ground_truth.json`` — {"persons": {<tracking_id>: {"smpl", "joints" 24×3}}} and
  ``ground_truth_vertices.npz`` (one (6890,3) array per tracking id);
* optional ``cloud.npz`` — the full scan: points_lidar (N,3) m, labels (N,).

Only one frame per folder is written; :func:`read_scene_folder` returns that frame.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from smplify3d_core.types import FrameObservation, PersonObservation, PersonTruth, PinholeCamera, SMPLParams

DATA_FILE = "data.pkl"
KEYPOINTS_FILE = "2d_keypoints.json"
CAMERA_FILE = "camera.json"
INIT_FILE = "init_smpl.json"
TRUTH_FILE = "ground_truth.json"
TRUTH_VERTICES_FILE = "ground_truth_vertices.npz"
CLOUD_FILE = "cloud.npz"
IMAGE_FILE = "image.png"


class SceneFolderError(ValueError):
    """A scene folder is missing a file or holds malformed content."""


def _write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=1))


def write_scene_folder(frame: FrameObservation, out_dir, camera_name: str = "camera", cloud_labels: Optional[np.ndarray] = None) -> Path:
    """Write ``frame`` as a scene folder and return the folder path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_file = IMAGE_FILE
    if frame.image is not None:
        cv2.imwrite(str(out / image_file), cv2.cvtColor(np.ascontiguousarray(frame.image), cv2.COLOR_RGB2BGR))
    records = []
    keypoints = {"camera": camera_name}
    for person in frame.persons:
        records.append({
            "sequence": frame.sequence,
            "time": frame.frame_id,
            "tracking_id": person.tracking_id,
            "pose3d": None if person.pose3d is None else person.pose3d.astype(np.float64),
            "bbox2d_xywh": [int(round(v)) for v in person.bbox_xywh],
            "human_points": person.points.astype(np.float64),
            "img_file": image_file,
        })
        keypoints[person.tracking_id] = np.column_stack([person.keypoints, person.lidar_visibility]).tolist()
    with open(out / DATA_FILE, "wb") as handle:
        pickle.dump(records, handle, protocol=4)
    _write_json(out / KEYPOINTS_FILE, keypoints)
    _write_json(out / CAMERA_FILE, {
        "camera": camera_name, "K": frame.camera.K.tolist(), "width": frame.camera.width,
        "height": frame.camera.height, "T_cam_lidar": frame.T_cam_lidar.tolist(),
    })
    inits = {p.tracking_id: p.init.to_dict() for p in frame.persons if p.init is not None}
    if inits:
        _write_json(out / INIT_FILE, {"sequence": frame.sequence, "time": frame.frame_id, "persons": inits})
    if frame.truth:
        _write_json(out / TRUTH_FILE, {
            "sequence": frame.sequence, "time": frame.frame_id,
            "persons": {tid: {"smpl": t.smpl.to_dict(), "joints": t.joints.tolist()} for tid, t in frame.truth.items()},
        })
        np.savez_compressed(out / TRUTH_VERTICES_FILE, **{tid: t.vertices.astype(np.float32) for tid, t in frame.truth.items()})
    if frame.cloud_lidar is not None:
        labels = np.full(len(frame.cloud_lidar), -1, dtype=np.int32) if cloud_labels is None else np.asarray(cloud_labels, dtype=np.int32)
        np.savez_compressed(out / CLOUD_FILE, points_lidar=frame.cloud_lidar.astype(np.float32), labels=labels)
    return out


def _require(folder: Path, name: str, what: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise SceneFolderError(f"scene folder {folder} lacks {name} ({what})")
    return path


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SceneFolderError(f"{path} is not valid JSON: {error}") from error


def read_camera_file(path: Path) -> tuple[PinholeCamera, np.ndarray, str]:
    """camera.json -> (camera, T_cam_lidar (4,4), camera name)."""
    payload = _read_json(path)
    try:
        camera = PinholeCamera(np.asarray(payload["K"], dtype=np.float64), payload["width"], payload["height"])
        T = np.asarray(payload.get("T_cam_lidar", np.eye(4)), dtype=np.float64)
    except KeyError as error:
        raise SceneFolderError(f"{path} lacks the key {error}") from error
    except ValueError as error:
        raise SceneFolderError(f"{path}: {error}") from error
    return camera, T, str(payload.get("camera", "camera"))


def read_scene_folder(folder, load_image: bool = True, require_keypoints: bool = True) -> FrameObservation:
    """Load a scene folder (with or without init and ground truth) into a FrameObservation.

    ``require_keypoints=False`` accepts a folder without 2d_keypoints.json (keypoints to be
    computed from the image): its persons get zero keypoints with confidence 0.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SceneFolderError(f"scene folder {folder} does not exist")
    camera, T_cam_lidar, _ = read_camera_file(_require(folder, CAMERA_FILE, "intrinsics K, image size and T_cam_lidar"))
    data_path = _require(folder, DATA_FILE, "per-person LiDAR points, boxes and 3D joints")
    if require_keypoints or (folder / KEYPOINTS_FILE).is_file():
        keypoints = _read_json(_require(folder, KEYPOINTS_FILE, "per-person 2D keypoints"))
    else:
        keypoints = None
    try:
        with open(data_path, "rb") as handle:
            records = pickle.load(handle)
    except (pickle.UnpicklingError, EOFError) as error:
        raise SceneFolderError(f"{data_path} is truncated or not a pickle: {error}") from error
    if not isinstance(records, list) or not records:
        raise SceneFolderError(f"{data_path} must hold a non-empty list of per-person records")
    times = sorted({str(r["time"]) for r in records})
    if len(times) > 1:
        raise SceneFolderError(f"{data_path} holds frames {times}; a scene folder holds exactly one frame")
    inits = _read_json(folder / INIT_FILE).get("persons", {}) if (folder / INIT_FILE).is_file() else {}
    persons = []
    for record in records:
        tid = str(record["tracking_id"])
        if keypoints is None:
            kp = np.zeros((17, 4))
        elif tid not in keypoints:
            raise SceneFolderError(f"{folder / KEYPOINTS_FILE} has no keypoints for tracking id {tid!r} listed in {DATA_FILE}")
        else:
            kp = np.asarray(keypoints[tid], dtype=np.float64)
        if kp.shape != (17, 4):
            raise SceneFolderError(f"{folder / KEYPOINTS_FILE}: keypoints of {tid!r} must be 17 x [x, y, score, lidar_visibility], got shape {kp.shape}")
        persons.append(PersonObservation(
            tracking_id=tid,
            bbox_xywh=np.asarray(record["bbox2d_xywh"], dtype=np.float64),
            keypoints=kp[:, :3],
            lidar_visibility=kp[:, 3],
            points=np.asarray(record["human_points"], dtype=np.float64).reshape(-1, 3),
            init=SMPLParams.from_dict(inits[tid]) if tid in inits else None,
            pose3d=None if record.get("pose3d") is None else np.asarray(record["pose3d"], dtype=np.float64),
        ))
    image_name = records[0].get("img_file")
    image = None
    if load_image and image_name:
        image_path = _require(folder, image_name, "the camera image named by img_file")
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SceneFolderError(f"{image_path} is not a readable image")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if image.shape[:2] != (camera.height, camera.width):
            raise SceneFolderError(f"{image_path} is {image.shape[1]}x{image.shape[0]} but camera.json says {camera.width}x{camera.height}")
    truth = None
    if (folder / TRUTH_FILE).is_file():
        truth_json = _read_json(folder / TRUTH_FILE)["persons"]
        vertices = {}
        if (folder / TRUTH_VERTICES_FILE).is_file():
            with np.load(folder / TRUTH_VERTICES_FILE) as archive:
                vertices = {k: archive[k].astype(np.float64) for k in archive.files}
        truth = {
            tid: PersonTruth(tid, SMPLParams.from_dict(t["smpl"]), vertices.get(tid, np.zeros((0, 3))), np.asarray(t["joints"]))
            for tid, t in truth_json.items()
        }
    cloud = None
    if (folder / CLOUD_FILE).is_file():
        with np.load(folder / CLOUD_FILE) as archive:
            cloud = archive["points_lidar"].astype(np.float64)
    return FrameObservation(
        sequence=str(records[0].get("sequence", folder.name)), frame_id=times[0], camera=camera,
        T_cam_lidar=T_cam_lidar, persons=persons, image=image, image_file=image_name, cloud_lidar=cloud, truth=truth,
    )
