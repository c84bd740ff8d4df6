"""Sequence folders: the frames of a simulated sequence as scene folders, plus ``sequence.json``.

A sequence folder ``DIR`` holds

* ``DIR/frames/<index:06d>/`` — one scene folder per frame (:mod:`smplify3d_core.eval.scene_folder`);
* ``DIR/sequence.json`` — {"format": "smplify3d-sequence-1", "fps", "preset", "seed", "persons",
  "moving_robot", "frames": [{"index", "stamp" (s), "folder" ("frames/000000"), "T_odom_cam" 4×4
  (camera frame -> odom, metres), "persons": {id: SMPL parameters in the camera frame}}],
  "betas": {id: 10 numbers}}.

:func:`write_sequence_folder` writes one from :class:`~smplify3d_core.sim.sequence.SequenceFrame` s;
:func:`read_sequence_folder` reads it back.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np

from smplify3d_core.eval.scene_folder import SceneFolderError, read_camera_file, read_scene_folder, write_scene_folder
from smplify3d_core.types import FrameObservation

SEQUENCE_FILE = "sequence.json"
SEQUENCE_FORMAT = "smplify3d-sequence-1"


class SequenceFolderError(SceneFolderError):
    """A sequence folder is missing a file or holds malformed content."""


@dataclass
class SequenceFolderFrame:
    """One frame read back: index, stamp (s), T_odom_cam (4, 4) and the scene folder's frame."""

    index: int
    stamp: float
    T_odom_cam: np.ndarray
    frame: FrameObservation


def write_sequence_folder(frames: Iterable, out_dir, settings: dict, betas: Dict[str, np.ndarray],
                          camera_name: str = "camera") -> Path:
    """Write the frames (SequenceFrame: index, stamp, T_odom_cam, scene) and ``sequence.json``.

    settings: {"fps", "preset", "seed", "persons", "moving_robot"} of the sequence; betas: id -> (10,).
    Returns the folder.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for item in frames:
        folder = f"frames/{int(item.index):06d}"
        write_scene_folder(item.scene.frame, out / folder, camera_name=camera_name, cloud_labels=item.scene.cloud_labels)
        truth = item.scene.frame.truth or {}
        records.append({"index": int(item.index), "stamp": float(item.stamp), "folder": folder,
                        "T_odom_cam": np.asarray(item.T_odom_cam, dtype=np.float64).tolist(),
                        "persons": {pid: t.smpl.to_dict() for pid, t in truth.items()}})
    payload = {"format": SEQUENCE_FORMAT, "fps": float(settings["fps"]), "preset": str(settings["preset"]),
               "seed": int(settings["seed"]), "persons": int(settings["persons"]),
               "moving_robot": bool(settings["moving_robot"]), "frames": records,
               "betas": {pid: np.asarray(b, dtype=np.float64).tolist() for pid, b in betas.items()}}
    (out / SEQUENCE_FILE).write_text(json.dumps(payload, indent=1))
    return out


def read_sequence_index(path) -> dict:
    """The parsed ``sequence.json`` of a sequence folder (checked: format tag, frame records)."""
    folder = Path(path)
    if not folder.is_dir():
        raise SequenceFolderError(f"sequence folder {folder} does not exist")
    index_file = folder / SEQUENCE_FILE
    if not index_file.is_file():
        raise SequenceFolderError(f"{folder} has no {SEQUENCE_FILE}: not a sequence folder "
                                  "(write one with `smplify3d simulate --frames N --out DIR`)")
    try:
        payload = json.loads(index_file.read_text())
    except json.JSONDecodeError as error:
        raise SequenceFolderError(f"{index_file} is not valid JSON: {error}") from error
    tag = payload.get("format") if isinstance(payload, dict) else None
    if tag != SEQUENCE_FORMAT:
        raise SequenceFolderError(f"{index_file}: format {tag!r} is not {SEQUENCE_FORMAT!r}")
    frames = payload.get("frames")
    if not isinstance(frames, list):
        raise SequenceFolderError(f"{index_file}: \"frames\" must be a list of frame records")
    for record in frames:
        missing = [k for k in ("index", "stamp", "folder", "T_odom_cam") if k not in record]
        if missing:
            raise SequenceFolderError(f"{index_file}: a frame record lacks {missing}")
    return payload


def read_sequence_folder(path, load_image: bool = True,
                         indices: Optional[Iterable[int]] = None) -> List[SequenceFolderFrame]:
    """The frames of a sequence folder in their order (only ``indices`` when given).

    A frame whose scene folder lists nobody (data.pkl with no person) reads as a frame without
    persons, its camera from camera.json.
    """
    folder = Path(path)
    payload = read_sequence_index(folder)
    wanted = None if indices is None else {int(i) for i in indices}
    out = []
    for record in payload["frames"]:
        if wanted is not None and int(record["index"]) not in wanted:
            continue
        T = np.asarray(record["T_odom_cam"], dtype=np.float64)
        if T.shape != (4, 4):
            raise SequenceFolderError(f"{folder / SEQUENCE_FILE}: T_odom_cam of frame {record['index']} is not 4x4")
        scene_dir = folder / record["folder"]
        if not scene_dir.is_dir():
            raise SequenceFolderError(f"{scene_dir} (frame {record['index']} of {folder / SEQUENCE_FILE}) does not exist")
        out.append(SequenceFolderFrame(int(record["index"]), float(record["stamp"]), T,
                                       _read_frame(scene_dir, load_image, str(payload.get("preset", "")),
                                                   int(record["index"]))))
    return out


def _read_frame(scene_dir: Path, load_image: bool, sequence: str, index: int) -> FrameObservation:
    import pickle

    with open(scene_dir / "data.pkl", "rb") as handle:
        empty = pickle.load(handle) == []
    if not empty:
        return read_scene_folder(scene_dir, load_image=load_image)
    camera, T_cam_lidar, _ = read_camera_file(scene_dir / "camera.json")
    return FrameObservation(sequence=sequence, frame_id=f"{index:06d}", camera=camera, T_cam_lidar=T_cam_lidar,
                            persons=[], truth={})
