"""SLOPER4D reader: the dataset's sequences, as the research code reads them (with the labels'
gender for the SMPL ground truth, where the research code always used the neutral model).

Layout, per sequence ``<root>/<seq>/`` (``<root>`` may also be one sequence folder):

* ``<seq>_labels.pkl`` — the dataset's labels, of which this reader uses
  ``RGB_info`` {``intrinsics`` [fx, fy, cx, cy] (default the fixed SLOPER4D values), ``lidar2cam``
  4×4, ``width``, ``height``}; ``RGB_frames`` {``file_basename`` [N], ``bbox`` [N × (x1, y1, x2, y2)
  or empty], ``skel_2d`` [N × (17, 3) or empty]}; ``first_person`` {``lidar_traj`` (N, ≥8):
  frame, x, y, z, qx, qy, qz, qw (LiDAR pose in the world)}; ``second_person`` {``opt_pose`` (N, 72),
  ``opt_trans`` (N, 3), ``beta`` (10,), ``gender``, ``point_clouds`` [N × (n, 3) world]}.
  The i-th entries of these per-frame lists belong together. The camera pose of frame i is
  ``lidar2cam @ world2lidar_i``; the second person is the subject; the ground truth is the SMPL body
  of ``opt_pose``/``opt_trans``/``beta`` with the labels' gender.
* ``rgb_data/<seq>_imgs/<file_basename>`` — the images;
* ``<seq>_keypoints.json`` — written by ``smplify3d keypoints`` next to the labels:
  {"camera": seq, "frames": {<frame id>: 17 × [x, y, score, lidar_visibility]}} (frame id = the image
  name without extension). Without it, the labels' ``skel_2d`` is used when present.
* ``<seq>_init_smpl.json`` — initial SMPL estimates in the camera frame,
  {"frames": {<frame id>: {global_orient, body_pose, betas, transl}}} (CLIFF pre-pass output).

Frames are kept only with a bbox, 2D keypoints, LiDAR points and ≥ 10 LiDAR-visible keypoints.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from smplify3d_core.eval.datasets import DatasetReader, FrameRef, transform_smpl
from smplify3d_core.eval.io import DatasetError, image_size, read_image_rgb, read_json, write_json_atomic
from smplify3d_core.geometry.transforms import rigid_inverse, transform_points
from smplify3d_core.perception.crops import lidar_visibility_for_keypoints
from smplify3d_core.types import FrameObservation, PersonObservation, PersonTruth, PinholeCamera, SMPLParams

SLOPER4D_INTRINSICS = (599.628, 599.466, 971.613, 540.258)  # fx, fy, cx, cy
MIN_LIDAR_VISIBLE_KEYPOINTS = 10
SUBJECT_ID = "second_person"


def _get(mapping, path: str, source: Path):
    value = mapping
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise DatasetError(f"{source} lacks {path}")
        value = value[key]
    return value


def world2lidar_from_traj(row) -> np.ndarray:
    """world -> LiDAR (4, 4) from a lidar_traj row [frame, x, y, z, qx, qy, qz, qw, ...] (LiDAR pose in world)."""
    row = np.asarray(row, dtype=np.float64)
    lidar2world = np.eye(4)
    lidar2world[:3, :3] = Rotation.from_quat(row[4:8]).as_matrix()
    lidar2world[:3, 3] = row[1:4]
    return rigid_inverse(lidar2world)


class Sloper4DReader(DatasetReader):
    name = "sloper4d"
    truth_kind = "smpl"
    frame_rate_hz = 20.0  # the Ouster

    def __init__(self, root, body_loader=None, sequences=None, min_lidar_visible: int = MIN_LIDAR_VISIBLE_KEYPOINTS) -> None:
        super().__init__(root)
        self.body_loader = body_loader
        self.min_lidar_visible = int(min_lidar_visible)
        self.wanted = list(sequences) if sequences else None
        self._labels: Dict[str, dict] = {}
        self._bodies: Dict[str, object] = {}
        self._keypoint_cache: Dict[str, dict] = {}
        self._init_cache: Dict[str, dict] = {}
        self._pending: Dict[str, tuple] = {}
        self.flush_every = 50  # frames per rewrite of <seq>_keypoints.json

    def _sequence_dirs(self) -> List[Path]:
        if (self.root / f"{self.root.name}_labels.pkl").is_file():
            return [self.root]
        if self.wanted:
            return [self.root / name for name in self.wanted]
        return sorted(p for p in self.root.iterdir() if p.is_dir() and (p / f"{p.name}_labels.pkl").is_file())

    def scan(self) -> List[FrameRef]:
        refs: List[FrameRef] = []
        dirs = self._sequence_dirs()
        if not dirs:
            self.issues.append(f"{self.root} holds no SLOPER4D sequence (<seq>/<seq>_labels.pkl)")
        for folder in dirs:
            seq = folder.name
            labels_path = folder / f"{seq}_labels.pkl"
            try:
                if not folder.is_dir():
                    raise DatasetError(f"SLOPER4D sequence folder {folder} is missing; its frames are not evaluated")
                if not labels_path.is_file():
                    raise DatasetError(f"{labels_path} is missing; sequence {seq} is not evaluated")
                try:
                    with open(labels_path, "rb") as handle:
                        labels = pickle.load(handle)
                except (pickle.UnpicklingError, EOFError) as error:
                    raise DatasetError(f"{labels_path} is truncated or not a pickle: {error}") from error
                names = list(_get(labels, "RGB_frames.file_basename", labels_path))
                counts = {
                    "RGB_frames.bbox": len(_get(labels, "RGB_frames.bbox", labels_path)),
                    "first_person.lidar_traj": len(_get(labels, "first_person.lidar_traj", labels_path)),
                    "second_person.opt_pose": len(_get(labels, "second_person.opt_pose", labels_path)),
                    "second_person.opt_trans": len(_get(labels, "second_person.opt_trans", labels_path)),
                    "second_person.point_clouds": len(_get(labels, "second_person.point_clouds", labels_path)),
                }
                short = {k: v for k, v in counts.items() if v < len(names)}
                if short:
                    raise DatasetError(f"{labels_path}: {len(names)} images in RGB_frames.file_basename but only {short} "
                                       f"entries; sequence {seq} is not evaluated")
                image_dir = folder / "rgb_data" / f"{seq}_imgs"
                if not image_dir.is_dir():
                    raise DatasetError(f"{image_dir} is missing; sequence {seq} is not evaluated")
            except DatasetError as error:
                self.issues.append(str(error))
                continue
            self._labels[seq] = labels
            for index, name in enumerate(names):
                image = image_dir / str(name)
                if not image.is_file():
                    self.issues.append(f"{image} is missing (entry {index} of {labels_path.name}); frame skipped")
                    continue
                refs.append(FrameRef(seq, Path(str(name)).stem, index, {
                    "labels": labels_path, "image": image, "keypoints": folder / f"{seq}_keypoints.json",
                    "init": folder / f"{seq}_init_smpl.json",
                }))
        return refs

    # -- keypoints ---------------------------------------------------------------------------------
    def keypoint_file(self, ref: FrameRef) -> Path:
        return ref.files["keypoints"]

    def _keypoints(self, ref: FrameRef) -> dict:
        path = ref.files["keypoints"]
        if ref.sequence not in self._keypoint_cache:
            self._keypoint_cache[ref.sequence] = read_json(path) if path.is_file() else {"camera": ref.sequence, "frames": {}}
        return self._keypoint_cache[ref.sequence]

    def keypoints_done(self, ref: FrameRef) -> bool:
        return ref.frame_id in self._keypoints(ref).get("frames", {})

    def write_keypoints(self, ref: FrameRef, camera_name: str, keypoints: Dict[str, np.ndarray]) -> Path:
        """Adds the frame to ``<seq>_keypoints.json`` (rewritten atomically every ``flush_every`` frames and on ``flush``)."""
        payload = self._keypoints(ref)
        payload["camera"] = camera_name
        kp = keypoints.get(SUBJECT_ID)
        if kp is not None:
            payload.setdefault("frames", {})[ref.frame_id] = np.asarray(kp, dtype=np.float64).tolist()
        self._pending[ref.sequence] = (ref.files["keypoints"], self._pending.get(ref.sequence, (None, 0))[1] + 1)
        if self._pending[ref.sequence][1] >= self.flush_every:
            self.flush()
        return ref.files["keypoints"]

    def flush(self) -> None:
        """Write the keypoint files with frames added since the last write."""
        for sequence, (path, count) in list(self._pending.items()):
            if count:
                write_json_atomic(path, self._keypoint_cache[sequence])
            self._pending.pop(sequence)

    # -- frames --------------------------------------------------------------------------------------
    def _body(self, gender: str):
        if self.body_loader is None:
            raise DatasetError("SLOPER4D ground truth needs an SMPL body model (pass body_loader / --smpl-model-path)")
        if gender not in self._bodies:
            self._bodies[gender] = self.body_loader(gender)
        return self._bodies[gender]

    def load_frame(self, ref: FrameRef, load_image: bool = False, require_keypoints: bool = True):
        labels = self._labels[ref.sequence]
        source = ref.files["labels"]
        i = ref.index
        info = labels.get("RGB_info", {})
        fx, fy, cx, cy = np.asarray(info.get("intrinsics", SLOPER4D_INTRINSICS), dtype=np.float64)[:4]
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        lidar2cam = np.asarray(_get(labels, "RGB_info.lidar2cam", source), dtype=np.float64)
        if lidar2cam.shape != (4, 4):
            raise DatasetError(f"{source}: RGB_info.lidar2cam must be 4x4, got {lidar2cam.shape}")
        if load_image:
            image = read_image_rgb(ref.files["image"])
            height, width = image.shape[:2]
        else:
            image = None
            width, height = image_size(ref.files["image"])
        camera = PinholeCamera(K, width, height)
        world2lidar = world2lidar_from_traj(labels["first_person"]["lidar_traj"][i])
        cam_world = lidar2cam @ world2lidar
        subject = labels["second_person"]
        points_world = np.asarray(subject["point_clouds"][i], dtype=np.float64).reshape(-1, 3)
        points_world = points_world[np.all(np.isfinite(points_world), axis=1)]
        if len(points_world) == 0:
            raise DatasetError(f"{source}: second_person.point_clouds[{i}] (frame {ref.frame_id}) has no points; frame skipped")
        bbox = np.asarray(labels["RGB_frames"]["bbox"][i], dtype=np.float64).reshape(-1)
        if bbox.size != 4 or not np.all(np.isfinite(bbox)) or bbox[2] <= bbox[0] or bbox[3] <= bbox[1]:
            raise DatasetError(f"{source}: RGB_frames.bbox[{i}] (frame {ref.frame_id}) is empty or invalid; frame skipped")
        box = np.array([bbox[0], bbox[1], bbox[2] - bbox[0], bbox[3] - bbox[1]])
        points_cam = transform_points(cam_world, points_world)

        keypoints = np.zeros((17, 4))
        frames_kp = self._keypoints(ref).get("frames", {})
        if ref.frame_id in frames_kp:
            keypoints = np.asarray(frames_kp[ref.frame_id], dtype=np.float64)
            if keypoints.shape != (17, 4):
                raise DatasetError(f"{ref.files['keypoints']}: frame {ref.frame_id} must have "
                                   "17 x [x, y, score, lidar_visibility]")
        else:
            skel = labels["RGB_frames"].get("skel_2d")
            skel = None if skel is None or len(skel) <= i else np.asarray(skel[i], dtype=np.float64)
            if skel is not None and skel.shape == (17, 3):
                keypoints = np.column_stack([skel, lidar_visibility_for_keypoints(points_cam, skel, camera)])
            elif require_keypoints:
                raise DatasetError(f"{ref.files['keypoints']} has no keypoints for frame {ref.frame_id} and the labels' "
                                   "skel_2d is empty (run `smplify3d keypoints --dataset sloper4d` first)")
        if require_keypoints:
            visible = int((keypoints[:, 3] > 0.5).sum())
            if visible < self.min_lidar_visible:
                raise DatasetError(f"frame {ref.key}: only {visible} LiDAR-visible keypoints (< {self.min_lidar_visible}, "
                                   "the research filter); frame skipped")

        init = None
        if ref.files["init"].is_file():
            if ref.sequence not in self._init_cache:
                self._init_cache[ref.sequence] = read_json(ref.files["init"]).get("frames", {})
            entry = self._init_cache[ref.sequence].get(ref.frame_id)
            if entry is not None:
                try:
                    init = SMPLParams.from_dict(entry)
                except ValueError as error:
                    raise DatasetError(f"{ref.files['init']}: frame {ref.frame_id}: {error}") from error

        gender = str(subject.get("gender", "neutral")).lower()
        body = self._body(gender)
        pose = np.asarray(subject["opt_pose"][i], dtype=np.float64).reshape(-1)
        betas = np.zeros(10)
        beta = np.asarray(subject.get("beta", np.zeros(10)), dtype=np.float64)
        beta = (beta[i] if beta.ndim == 2 else beta).reshape(-1)  # (10,) per sequence, or (N, 10) per frame
        betas[:min(10, beta.size)] = beta[:10]
        world_params = SMPLParams(pose[:3], pose[3:72], betas, np.asarray(subject["opt_trans"][i], dtype=np.float64))
        cam_params = transform_smpl(world_params, cam_world, body)
        with torch.no_grad():
            dtype, device = body.v_template.dtype, body.v_template.device
            out = body(*(torch.as_tensor(v[None], dtype=dtype, device=device) for v in
                         (cam_params.global_orient, cam_params.body_pose, cam_params.betas, cam_params.transl)))
        truth = PersonTruth(SUBJECT_ID, cam_params, out.vertices[0].double().cpu().numpy(), out.joints[0].double().cpu().numpy())
        person = PersonObservation(SUBJECT_ID, box, keypoints[:, :3], keypoints[:, 3], points_cam, init=init)
        frame = FrameObservation(sequence=ref.sequence, frame_id=ref.frame_id, camera=camera, T_cam_lidar=lidar2cam,
                                 persons=[person], image=image, image_file=ref.files["image"].name,
                                 cloud_lidar=transform_points(world2lidar, points_world), truth={SUBJECT_ID: truth},
                                 T_world_cam=rigid_inverse(cam_world))
        return frame, []
