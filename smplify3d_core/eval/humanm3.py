"""HumanM3 reader: the dataset's test sequences, as the research code reads them.

Layout, per test sequence ``<root>/test/<seq>/`` (``<root>`` may also be the ``test`` folder itself):

* ``camera_calibration/<cam>.json`` — ``"intrinsic"``: 3×3 (or 3×4: the first 3 columns are used),
  ``"extrinsic"``: 4×4 LiDAR/world → camera;
* ``pointcloud/<frame:06d>.pcd`` — the scan in the world (= LiDAR) frame, metres;
* ``pose_calib/<frame>.json`` — {tracking id: 45 floats = 15 joints × xyz}, world frame, metres;
* ``images/<cam>/`` — the i-th sorted image pairs with the i-th sorted pose_calib file;
* ``pose2d/<frame>.json`` — 2D keypoints + LiDAR visibility (written by ``smplify3d keypoints``);
* ``init_smpl/<frame>.json`` — initial SMPL estimates in the camera frame (this project's
  addition: where a CLIFF pre-pass or any image-only method's output goes).

The sequences and their cameras: basketball1 (camera_1), basketball2 (camera_0),
intersection (camera_3), plaza (camera_2).

Per person (the research rule): the points inside a box around the GT joints (±0.2 m in x/y,
z from the lowest joint to the highest + 0.2 m) are the person's points; points and joints move
to the camera frame; the bbox is that of the projected GT joints enlarged 35% in x, 15% in y.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from smplify3d_core.eval.datasets import DatasetReader, FrameRef, box_from_joints
from smplify3d_core.eval.io import (
    DatasetError, image_size, keypoints_payload, parse_inits, parse_keypoints, read_image_rgb, read_json, read_pcd,
    write_json_atomic,
)
from smplify3d_core.geometry.transforms import rigid_inverse, transform_points
from smplify3d_core.types import FrameObservation, PersonObservation, PinholeCamera

HUMANM3_SEQUENCES = {"basketball1": "camera_1", "basketball2": "camera_0", "intersection": "camera_3", "plaza": "camera_2"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
CROP_MARGIN_XY = 0.2
CROP_MARGIN_TOP = 0.2


def read_humanm3_calibration(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """(K (3, 3), T_cam_world (4, 4)) of a camera_calibration/<cam>.json file."""
    payload = read_json(path)
    intrinsic = next((payload[k] for k in ("intrinsic", "intrinsics", "K") if k in payload), None)
    extrinsic = next((payload[k] for k in ("extrinsic", "extrinsics", "T") if k in payload), None)
    if intrinsic is None or extrinsic is None:
        raise DatasetError(f"{path} must hold 'intrinsic' (3x3 or 3x4) and 'extrinsic' (4x4 world -> camera)")
    K = np.asarray(intrinsic, dtype=np.float64)
    T = np.asarray(extrinsic, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != 3 or K.shape[1] < 3 or T.shape != (4, 4):
        raise DatasetError(f"{path}: intrinsic must be 3x3 or 3x4 and extrinsic 4x4, got {K.shape} and {T.shape}")
    return K[:, :3], T


def crop_person(points_world: np.ndarray, joints_world: np.ndarray) -> np.ndarray:
    """Boolean mask of the points in the research box around the person's GT joints (world frame, z up)."""
    low = joints_world.min(axis=0)
    high = joints_world.max(axis=0)
    p = points_world
    return ((p[:, 0] >= low[0] - CROP_MARGIN_XY) & (p[:, 0] <= high[0] + CROP_MARGIN_XY)
            & (p[:, 1] >= low[1] - CROP_MARGIN_XY) & (p[:, 1] <= high[1] + CROP_MARGIN_XY)
            & (p[:, 2] >= low[2]) & (p[:, 2] <= high[2] + CROP_MARGIN_TOP))


class HumanM3Reader(DatasetReader):
    name = "humanm3"
    truth_kind = "joints15"
    frame_rate_hz = 10.0  # the Livox

    def __init__(self, root, sequences=None) -> None:
        super().__init__(root)
        test = self.root / "test"
        self.test_dir = test if test.is_dir() else self.root
        self.sequences = list(sequences) if sequences else list(HUMANM3_SEQUENCES)
        unknown = [s for s in self.sequences if s not in HUMANM3_SEQUENCES]
        if unknown:
            raise DatasetError(f"unknown HumanM3 sequence(s) {unknown}; the test sequences are {list(HUMANM3_SEQUENCES)}")
        self._calibration: Dict[str, tuple] = {}

    def sequence_dir(self, sequence: str) -> Path:
        return self.test_dir / sequence

    def scan(self) -> List[FrameRef]:
        refs: List[FrameRef] = []
        for sequence in self.sequences:
            folder = self.sequence_dir(sequence)
            camera = HUMANM3_SEQUENCES[sequence]
            try:
                if not folder.is_dir():
                    raise DatasetError(f"HumanM3 sequence folder {folder} is missing; its frames are not evaluated")
                self._calibration[sequence] = read_humanm3_calibration(folder / "camera_calibration" / f"{camera}.json")
                pose_dir, image_dir = folder / "pose_calib", folder / "images" / camera
                for needed in (pose_dir, image_dir, folder / "pointcloud"):
                    if not needed.is_dir():
                        raise DatasetError(f"{needed} is missing; sequence {sequence} is not evaluated")
                poses = sorted(pose_dir.glob("*.json"))
                images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if len(poses) != len(images):
                    raise DatasetError(f"{image_dir} holds {len(images)} images but {pose_dir} holds {len(poses)} pose files; "
                                       f"the i-th image pairs with the i-th pose file, so sequence {sequence} is not evaluated")
            except DatasetError as error:
                self.issues.append(str(error))
                continue
            for index, (pose, image) in enumerate(zip(poses, images)):
                frame_id = pose.stem
                try:
                    pcd_name = f"{int(frame_id):06d}.pcd"
                except ValueError:
                    pcd_name = f"{frame_id}.pcd"
                refs.append(FrameRef(sequence, frame_id, index, {
                    "pose": pose, "image": image, "pcd": folder / "pointcloud" / pcd_name,
                    "pose2d": folder / "pose2d" / f"{frame_id}.json", "init": folder / "init_smpl" / f"{frame_id}.json",
                    "camera": camera,
                }))
        return refs

    def keypoint_file(self, ref: FrameRef) -> Path:
        return ref.files["pose2d"]

    def keypoints_done(self, ref: FrameRef) -> bool:
        return ref.files["pose2d"].is_file()

    def write_keypoints(self, ref: FrameRef, camera_name: str, keypoints: Dict[str, np.ndarray]) -> Path:
        return write_json_atomic(ref.files["pose2d"], keypoints_payload(camera_name, keypoints))

    def load_frame(self, ref: FrameRef, load_image: bool = False, require_keypoints: bool = True):
        K, T_cam_world = self._calibration[ref.sequence]
        image_path = ref.files["image"]
        if load_image:
            image = read_image_rgb(image_path)
            height, width = image.shape[:2]
        else:
            image = None
            width, height = image_size(image_path)
        camera = PinholeCamera(K, width, height)
        pose_payload = read_json(ref.files["pose"])
        if not isinstance(pose_payload, dict) or not pose_payload:
            raise DatasetError(f"{ref.files['pose']} holds no persons (expected {{tracking_id: 45 floats}})")
        cloud = read_pcd(ref.files["pcd"])
        if len(cloud) == 0:
            raise DatasetError(f"{ref.files['pcd']} has no points; frame {ref.key} is not evaluated")
        keypoints = None
        if ref.files["pose2d"].is_file():
            keypoints = parse_keypoints(read_json(ref.files["pose2d"]), ref.files["pose2d"])
        elif require_keypoints:
            raise DatasetError(f"{ref.files['pose2d']} is missing (run `smplify3d keypoints --dataset humanm3` first)")
        inits = parse_inits(read_json(ref.files["init"]), ref.files["init"]) if ref.files["init"].is_file() else {}
        notes: List[str] = []
        persons = []
        for tid, values in pose_payload.items():
            joints = np.asarray(values, dtype=np.float64)
            if joints.size != 45 or not np.all(np.isfinite(joints)):
                notes.append(f"{ref.files['pose']}: person {tid!r} does not have 45 finite numbers (15 joints x xyz); skipped")
                continue
            joints_world = joints.reshape(15, 3)
            joints_cam = transform_points(T_cam_world, joints_world)
            box = box_from_joints(camera.project(joints_cam), camera) if np.all(joints_cam[:, 2] > 0) else None
            if box is None:
                notes.append(f"{ref.files['pose']}: person {tid!r} is not in the image {image_path.name}; skipped")
                continue
            points = transform_points(T_cam_world, cloud[crop_person(cloud, joints_world)])
            if len(points) == 0:
                notes.append(f"{ref.files['pcd']}: no LiDAR points around person {tid!r}; skipped")
                continue
            if keypoints is not None and tid not in keypoints:
                if require_keypoints:
                    notes.append(f"{ref.files['pose2d']} has no keypoints for person {tid!r}; skipped")
                    continue
                kp = np.zeros((17, 4))
            else:
                kp = keypoints[tid] if keypoints is not None else np.zeros((17, 4))
            persons.append(PersonObservation(str(tid), box, kp[:, :3], kp[:, 3], points, init=inits.get(str(tid)),
                                             pose3d=joints_cam))
        frame = FrameObservation(sequence=ref.sequence, frame_id=ref.frame_id, camera=camera, T_cam_lidar=T_cam_world,
                                 persons=persons, image=image, image_file=str(image_path.relative_to(self.test_dir)),
                                 cloud_lidar=cloud, T_world_cam=rigid_inverse(T_cam_world))
        return frame, notes
