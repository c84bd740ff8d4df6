"""The 2D keypoint pre-pass: ViTPose keypoints + per-keypoint LiDAR visibility for a dataset.

For every frame the persons' boxes come from the dataset (HumanM3: enlarged box of the projected
GT joints; SLOPER4D: the labels' bbox; demo: bbox2d_xywh), ViTPose runs on the image, the LiDAR
visibility of each keypoint is read from the person's projected points (a dilated hit mask, see
:mod:`smplify3d_core.geometry.visibility`) and the result
is written in the dataset's layout:

* HumanM3: ``<seq>/pose2d/<frame>.json``;
* SLOPER4D: ``<seq>/<seq>_keypoints.json`` next to the labels (one file, frames keyed by id);
* demo: ``<frame folder>/2d_keypoints.json``.

All use ``{"camera": name, <tracking_id>: 17 × [x, y, score, lidar_visibility]}`` (SLOPER4D under
``"frames"``). Frames already done are skipped, so an interrupted pre-pass resumes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List

import numpy as np

from smplify3d_core.eval.datasets import DatasetReader
from smplify3d_core.eval.io import DatasetError
from smplify3d_core.perception.crops import lidar_visibility_for_keypoints


@dataclass
class PrepassReport:
    written: int = 0
    skipped: int = 0
    issues: List[str] = field(default_factory=list)


def run_keypoint_prepass(reader: DatasetReader, estimator, lidar_kernel_px: int = 50, progress: bool = True,
                         log: Callable[[str], None] = print) -> PrepassReport:
    """Run ``estimator`` (image (H,W,3) RGB, boxes (N,4) -> (N,17,3)) over every frame not done yet."""
    refs = reader.frames()
    report = PrepassReport(issues=list(reader.issues))
    for message in reader.issues:
        log(f"warning: {message}")
    try:
        _prepass_frames(reader, refs, estimator, lidar_kernel_px, progress, log, report)
    finally:
        reader.flush()
    return report


def _prepass_frames(reader, refs, estimator, lidar_kernel_px, progress, log, report) -> None:
    from tqdm import tqdm

    for ref in tqdm(refs, desc=f"keypoints {reader.name}", unit="frame", disable=not progress):
        if reader.keypoints_done(ref):
            report.skipped += 1
            continue
        try:
            frame, notes = reader.load_frame(ref, load_image=True, require_keypoints=False)
            for note in notes:
                report.issues.append(note)
                log(f"warning: {note}")
            if not frame.persons:
                raise DatasetError(f"frame {ref.key}: no person with a box and LiDAR points; nothing to detect")
            boxes = np.stack([p.bbox_xywh for p in frame.persons])
            keypoints = np.asarray(estimator(frame.image, boxes), dtype=np.float64)
            out = {}
            for person, kp in zip(frame.persons, keypoints):
                visibility = lidar_visibility_for_keypoints(person.points, kp, frame.camera, lidar_kernel_px)
                out[person.tracking_id] = np.column_stack([kp, visibility])
            reader.write_keypoints(ref, reader.camera_name(ref), out)
            report.written += 1
        except (DatasetError, ValueError, FileNotFoundError) as error:
            report.issues.append(str(error))
            log(f"warning: {error}")
