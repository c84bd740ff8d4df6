"""``open_dataset``: the dataset reader for a dataset name (``smplify3d keypoints`` / ``smplify3d eval``)."""
from __future__ import annotations

from smplify3d_core.eval.datasets import DatasetReader
from smplify3d_core.eval.demo_dataset import DemoReader
from smplify3d_core.eval.humanm3 import HumanM3Reader
from smplify3d_core.eval.sloper4d import Sloper4DReader

DATASETS = ("humanm3", "sloper4d", "demo")


def open_dataset(name: str, root, body_loader=None, sequences=None, camera=None) -> DatasetReader:
    """A reader for ``name`` (one of :data:`DATASETS`) over the folder ``root``.

    body_loader: callable gender -> SMPLBody, needed by SLOPER4D for its SMPL ground truth.
    sequences: optional subset of sequence names.
    camera: :class:`~smplify3d_core.eval.scene_folder.CameraOptions` (``--camera`` / ``--intrinsics`` /
    ``--extrinsic``) for demo folders; HumanM3 and SLOPER4D read their own calibration and refuse it.
    """
    if camera is not None and name != "demo":
        raise ValueError(f"--camera / --intrinsics / --extrinsic apply to --dataset demo only; {name} reads the "
                         "camera calibration shipped with the dataset")
    if name == "humanm3":
        return HumanM3Reader(root, sequences=sequences)
    if name == "sloper4d":
        return Sloper4DReader(root, body_loader=body_loader, sequences=sequences)
    if name == "demo":
        return DemoReader(root, sequences=sequences, camera=camera)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
