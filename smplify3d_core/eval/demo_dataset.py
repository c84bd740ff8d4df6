"""Research demo format as a dataset: a folder of scene folders (one frame each).

``<root>/<frame folder>/`` holds data.pkl, 2d_keypoints.json, the image and the camera, and
optionally init_smpl.json / smpl_<frame>.json / ground_truth.json (see
:mod:`smplify3d_core.eval.scene_folder`, which reads each folder). ``<root>`` may also be a single
scene folder, e.g. the research repository's ``data/demo`` as published (data.pkl,
2d_keypoints.json, the image, smpl_<frame>.json; no camera.json). The camera comes from, in this
order, the reader's ``camera`` options (``--camera FILE`` / ``--intrinsics FX FY CX CY``), the
folder's camera.json, the ``info.camera_intrinsics`` of smpl_<frame>.json; a frame without any
is reported naming the two flags. With ``--extrinsic`` the points and joints of data.pkl are taken
as LiDAR-frame and moved into the camera frame. Initial estimates: init_smpl.json, else the
``hmr`` entries of smpl_<frame>.json. The sequence of a frame is the ``sequence`` of its data.pkl
records; the frame id is its ``time``. Ground truth: SMPL meshes when ground_truth.json +
ground_truth_vertices.npz are there, else the 15 HumanM3 joints ``pose3d``.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from smplify3d_core.eval.datasets import DatasetReader, FrameRef
from smplify3d_core.eval.io import DatasetError, keypoints_payload, read_json, write_json_atomic
from smplify3d_core.eval.scene_folder import (
    CAMERA_FILE,
    DATA_FILE,
    KEYPOINTS_FILE,
    CameraOptions,
    SceneFolderError,
    read_camera_file,
    read_scene_folder,
)


class DemoReader(DatasetReader):
    """Scene folders in the research demo format.

    root: a folder of scene folders, or one scene folder; sequences: optional subset of sequence
    names; camera: :class:`~smplify3d_core.eval.scene_folder.CameraOptions` from ``--camera`` /
    ``--intrinsics`` / ``--extrinsic``, applied to every frame (None: each folder's own camera).
    """

    name = "demo"
    truth_kind = "auto"

    def __init__(self, root, sequences=None, camera: Optional[CameraOptions] = None) -> None:
        super().__init__(root)
        self.wanted = set(sequences) if sequences else None
        self.camera = camera

    def scan(self) -> List[FrameRef]:
        if (self.root / DATA_FILE).is_file():
            folders = [self.root]
        else:
            folders = sorted(p for p in self.root.iterdir() if p.is_dir() and (p / DATA_FILE).is_file())
            for p in sorted(self.root.iterdir()):
                if p.is_dir() and not (p / DATA_FILE).is_file() and any(p.iterdir()):
                    self.issues.append(f"{p} has no {DATA_FILE}; not a scene folder, skipped")
        if not folders:
            self.issues.append(f"{self.root} holds no scene folder (a folder with {DATA_FILE})")
        refs = []
        for folder in folders:
            try:
                with open(folder / DATA_FILE, "rb") as handle:
                    records = pickle.load(handle)
                first = records[0]
                sequence, frame_id = str(first.get("sequence", folder.name)), str(first.get("time", folder.name))
            except (pickle.UnpicklingError, EOFError, IndexError, KeyError, TypeError, AttributeError) as error:
                self.issues.append(f"{folder / DATA_FILE} is not a list of per-person records ({error}); skipped")
                continue
            if self.wanted and sequence not in self.wanted:
                continue
            refs.append(FrameRef(sequence, frame_id, len(refs), {"folder": folder}))
        return refs

    def keypoint_file(self, ref: FrameRef) -> Path:
        return ref.files["folder"] / KEYPOINTS_FILE

    def keypoints_done(self, ref: FrameRef) -> bool:
        return self.keypoint_file(ref).is_file()

    def write_keypoints(self, ref: FrameRef, camera_name: str, keypoints: Dict[str, np.ndarray]) -> Path:
        return write_json_atomic(self.keypoint_file(ref), keypoints_payload(camera_name, keypoints))

    def camera_name(self, ref: FrameRef) -> str:
        """camera.json's name, else the ``camera`` of an existing 2d_keypoints.json, else ``"camera"``."""
        folder = ref.files["folder"]
        try:
            if (folder / CAMERA_FILE).is_file():
                return read_camera_file(folder / CAMERA_FILE)[2]
            if (folder / KEYPOINTS_FILE).is_file():
                payload = read_json(folder / KEYPOINTS_FILE)
                if isinstance(payload, dict) and payload.get("camera"):
                    return str(payload["camera"])
        except SceneFolderError as error:
            raise DatasetError(str(error)) from error
        return "camera"

    def load_frame(self, ref: FrameRef, load_image: bool = False, require_keypoints: bool = True):
        try:
            frame = read_scene_folder(ref.files["folder"], load_image=load_image, require_keypoints=require_keypoints,
                                      camera=self.camera)
        except SceneFolderError as error:
            raise DatasetError(str(error)) from error
        notes, kept = [], []
        for person in frame.persons:
            if len(person.points) == 0:
                notes.append(f"{ref.files['folder'] / DATA_FILE}: person {person.tracking_id!r} has no LiDAR points; skipped")
            else:
                kept.append(person)
        if not kept and frame.persons:
            raise DatasetError(f"{ref.files['folder'] / DATA_FILE}: no person of frame {ref.key} has LiDAR points; frame skipped")
        frame.persons = kept
        return frame, notes
