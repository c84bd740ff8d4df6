"""Files written after fitting a frame: research-style JSON, meshes, overlay image, metrics."""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch

from smplify3d_core.eval.metrics import score_against_truth
from smplify3d_core.pipeline import FrameFit
from smplify3d_core.sim.render import PERSON_PALETTE, render_scene

_COCO_LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10), (5, 6), (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16),
               (0, 1), (0, 2), (1, 3), (2, 4))


def _verdict_measures(result, b: int) -> dict:
    """The verdict's measures of person ``b`` (None where not judged or not measurable: JSON null)."""
    names = ("point_residual_m", "height_m", "depth_offset_m", "range_m")
    verdict = result.verdict
    values = {name: None if verdict is None else float(getattr(verdict, name)[b]) for name in names}
    return {name: value if value is not None and np.isfinite(value) else None for name, value in values.items()}


def smpl_result_json(fit: FrameFit) -> dict:
    """The research code's ``smpl_<frame>.json`` content: {info {sequence, date_created, skeleton2d,
    camera_intrinsics}, image {image_id, file_name, width, height}, annotations [{idx, bbox,
    keypoints 17×5, hmr {body_pose 69, betas 10, global_orient 3, global_t 3, joints3d 24×3},
    reprojection_error (px), chamfer_distance (m²)}]}, plus this project's per-person lidar_points,
    visible_parts, flags, valid, fitted and the verdict's measures (point_residual_m, height_m,
    depth_offset_m, range_m; null where a check could not run)."""
    frame, result = fit.frame, fit.result
    annotations = []
    for b, person in enumerate(frame.persons):
        keypoints = np.column_stack([person.keypoints, person.lidar_visibility, np.ones(17)])
        annotations.append({
            "idx": person.tracking_id,
            "bbox": [float(v) for v in person.bbox_xywh],
            "keypoints": keypoints.tolist(),
            "hmr": {
                "body_pose": result.body_pose[b].tolist(),
                "betas": result.betas[b].tolist(),
                "global_orient": result.global_orient[b].tolist(),
                "global_t": result.transl[b].tolist(),
                "joints3d": result.joints[b].tolist(),
            },
            "reprojection_error": float(result.reprojection_error_px[b]),
            "chamfer_distance": float(result.chamfer_m2[b]),
            "lidar_points": int(result.lidar_point_count[b]),
            "visible_parts": result.visible_parts[b],
            "flags": result.flags[b],
            "valid": bool(result.valid[b]),
            "fitted": bool(result.fitted[b]),
            **_verdict_measures(result, b),
        })
    return {
        "info": {
            "sequence": frame.sequence,
            "date_created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "skeleton2d": "coco17",
            "camera_intrinsics": frame.camera.K.tolist(),
        },
        "image": {"image_id": frame.frame_id, "file_name": frame.image_file, "width": frame.camera.width,
                  "height": frame.camera.height},
        "annotations": annotations,
    }


def write_ply(path, vertices: np.ndarray, faces: np.ndarray, color=(200, 200, 200)) -> None:
    """Binary little-endian PLY of a coloured triangle mesh (vertices in metres)."""
    vertices = np.asarray(vertices, dtype="<f4")
    faces = np.asarray(faces, dtype="<i4")
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    vertex_records = np.zeros(len(vertices), dtype=[("p", "<f4", 3), ("c", "u1", 3)])
    vertex_records["p"] = vertices
    vertex_records["c"] = np.asarray(color, dtype=np.uint8)
    face_records = np.zeros(len(faces), dtype=[("n", "u1"), ("i", "<i4", 3)])
    face_records["n"] = 3
    face_records["i"] = faces
    with open(path, "wb") as handle:
        handle.write(header.encode("ascii"))
        handle.write(vertex_records.tobytes())
        handle.write(face_records.tobytes())


def person_color(index: int) -> np.ndarray:
    """A stable RGB colour (uint8) per person index."""
    palette = np.asarray(PERSON_PALETTE)
    palette = palette * 255 if palette.max() <= 1.0 else palette
    return palette[index % len(palette)].astype(np.uint8)


def draw_overlay(fit: FrameFit, faces: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """(H, W, 3) uint8 RGB: the fitted meshes blended on the image, LiDAR points and keypoints drawn."""
    frame, result = fit.frame, fit.result
    camera = frame.camera
    base = frame.image if frame.image is not None else np.full((camera.height, camera.width, 3), 40, np.uint8)
    meshes = [(result.vertices[b].numpy().astype(np.float64), faces) for b in range(len(frame.persons)) if bool(result.valid[b])]
    colors = np.array([person_color(b) for b in range(len(frame.persons)) if bool(result.valid[b])],
                      dtype=np.uint8).reshape(-1, 3)
    canvas = base.copy()
    if meshes:
        rendered, person_index, _ = render_scene(camera, meshes, colors)
        covered = person_index >= 0
        canvas[covered] = (alpha * rendered[covered] + (1 - alpha) * base[covered]).astype(np.uint8)
    bgr = cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)
    for b, person in enumerate(frame.persons):
        color = tuple(int(c) for c in person_color(b)[::-1])
        uv = camera.project(person.points)
        for u, v in uv[np.all(np.isfinite(uv), axis=1)].astype(int):
            if 0 <= u < camera.width and 0 <= v < camera.height:
                cv2.circle(bgr, (u, v), 1, (255, 255, 255), -1)
        kp = person.keypoints
        for i, j in _COCO_LIMBS:
            if kp[i, 2] > 0.3 and kp[j, 2] > 0.3:
                cv2.line(bgr, tuple(int(x) for x in kp[i, :2]), tuple(int(x) for x in kp[j, :2]), color, 2, cv2.LINE_AA)
        for x, y, c in kp:
            if c > 0.3:
                cv2.circle(bgr, (int(x), int(y)), 3, (0, 0, 0), -1)
        x, y, w, h = person.bbox_xywh
        cv2.putText(bgr, person.tracking_id, (int(x), max(int(y) - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@torch.no_grad()
def frame_metrics(fit: FrameFit, body) -> Optional[dict]:
    """Per-person errors of the initial estimate and of the fit against the frame's ground truth.

    Returns None when the frame has no ground truth, else {"persons": rows}; persons without truth
    or without a fitted body (``fitted`` False) are left out — bodies the verdict rejected are
    scored too, so the errors measure the fit, not the verdict. A row holds tracking_id,
    lidar_points, depth_m (true pelvis depth, m), valid (the verdict's), flags, and each key of
    :func:`~smplify3d_core.eval.metrics.score_against_truth` for the initial estimate and the fit:
    ``<metric>_init_mm`` / ``<metric>_fit_mm`` for the errors in mm (pve, pa_pve, mpjpe, pa_mpjpe,
    pelvis_error), ``<metric>_init`` / ``<metric>_fit`` for pck50, auc_0_200 and mpere.
    """
    frame, result, inputs = fit.frame, fit.result, fit.inputs
    if not frame.truth:
        return None
    init = body(inputs.init_global_orient, inputs.init_body_pose, inputs.init_betas, inputs.init_transl)
    rows = []
    faces = body.faces
    for b, person in enumerate(frame.persons):
        truth = frame.truth.get(person.tracking_id)
        if truth is None or truth.vertices.shape[0] != result.vertices.shape[1] or not bool(result.fitted[b]):
            continue
        gt_v, gt_j = truth.vertices[None], truth.joints[None]
        fitted = score_against_truth(result.vertices[b:b + 1].double().numpy(), result.joints[b:b + 1].double().numpy(),
                                     gt_v, gt_j, faces)
        initial = score_against_truth(init.vertices[b:b + 1].double().cpu().numpy(),
                                      init.joints[b:b + 1].double().cpu().numpy(), gt_v, gt_j, faces)
        rows.append({
            "tracking_id": person.tracking_id,
            "lidar_points": int(result.lidar_point_count[b]),
            "depth_m": float(truth.joints[0, 2]),
            **{f"{k.replace('_mm', '')}_init_mm" if k.endswith("_mm") else f"{k}_init": float(v[0]) for k, v in initial.items()},
            **{f"{k.replace('_mm', '')}_fit_mm" if k.endswith("_mm") else f"{k}_fit": float(v[0]) for k, v in fitted.items()},
            "valid": bool(result.valid[b]),
            "flags": result.flags[b],
        })
    return {"persons": rows}


def write_fit_outputs(fit: FrameFit, body, out_dir, overlay: bool = True) -> dict:
    """Write smpl_<frame>.json, person_<id>.ply, overlay_<frame>.png and metrics.json (with truth).

    Every fitted body gets its PLY, the invalid ones too (to look at what the verdict rejected: their
    ``valid`` and ``flags`` are in smpl_<frame>.json). Returns the metrics dict (or an empty dict
    without ground truth).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame, result = fit.frame, fit.result
    (out / f"smpl_{frame.frame_id}.json").write_text(json.dumps(smpl_result_json(fit), indent=1))
    for b, person in enumerate(frame.persons):
        if bool(result.fitted[b]):
            write_ply(out / f"person_{frame.frame_id}_{person.tracking_id}.ply", result.vertices[b].numpy(), body.faces,
                      person_color(b))
    if overlay:
        cv2.imwrite(str(out / f"overlay_{frame.frame_id}.png"), cv2.cvtColor(draw_overlay(fit, body.faces), cv2.COLOR_RGB2BGR))
    metrics = frame_metrics(fit, body) or {}
    if metrics:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics
