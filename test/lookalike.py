"""Tiny look-alike dataset folders made with the simulator (tests, smoke runs of the commands).

The real datasets are licensed and never shipped; these writers produce folders in the same
layouts and file formats (``.pcd`` via open3d, JSON, pickle, JPEG/PNG images) whose ground truth is
the simulator's, plus the simulator's 2D keypoints (``keypoints=True``) and image-only initial
estimates (``inits=True``) in the files the readers look for.
"""
from __future__ import annotations

import datetime
import pickle
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from smplify3d_core.body.tables import body_tables
from smplify3d_core.eval.datasets import transform_smpl
from smplify3d_core.eval.io import inits_payload, keypoints_payload, write_json_atomic, write_pcd
from smplify3d_core.eval.humanm3 import HUMANM3_SEQUENCES
from smplify3d_core.eval.scene_folder import write_scene_folder
from smplify3d_core.geometry.transforms import rigid_inverse, transform_points
from smplify3d_core.sim.presets import get_preset
from smplify3d_core.sim.scene import simulate_scene
from smplify3d_core.sim.sequence import SequenceSettings, simulate_sequence


def _write_image(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))


def write_humanm3_lookalike(root, body, sequences: Sequence[str] = ("basketball1", "plaza"), frames: int = 2,
                            persons: int = 2, seed: int = 0, keypoints: bool = True, inits: bool = True,
                            lidar_yaw_deg: float = 8.0, preset=None, moving_people: bool = False) -> Path:
    """``<root>/test/<seq>/`` folders. The world frame is the LiDAR frame (z up), turned
    ``lidar_yaw_deg`` about the vertical against the camera, so the world -> camera extrinsic is a
    non-trivial rotation + translation. GT = the 15 HumanM3 joints regressed from the true meshes.
    Frames are independent random scenes, or with ``moving_people`` a simulated sequence at 10 Hz
    (the same people walking, stable ids; the rig stands still as HumanM3's does). ``preset``: the
    sensor (default humanm3)."""
    root = Path(root)
    regressor = body_tables(body.data).humanm3_regressor
    preset = (preset or get_preset("humanm3")).with_changes(lidar_rpy_deg=(0.0, 0.0, float(lidar_yaw_deg)))
    for s, sequence in enumerate(sequences):
        if moving_people:
            settings = SequenceSettings(persons=persons, frames=frames, fps=10.0, preset=preset, seed=seed + s,
                                        crossings=False)
            scenes = [item.scene for item in simulate_sequence(body, settings)]
        else:
            scenes = [simulate_scene(body, persons=persons, preset=preset, seed=seed + 1000 * s + f) for f in range(frames)]
        camera = HUMANM3_SEQUENCES[sequence]
        folder = root / "test" / sequence
        T_cam_world = preset.T_cam_lidar
        K34 = np.column_stack([preset.K, np.zeros(3)])
        write_json_atomic(folder / "camera_calibration" / f"{camera}.json",
                          {"intrinsic": K34.tolist(), "extrinsic": T_cam_world.tolist()})
        T_world_cam = rigid_inverse(T_cam_world)
        for f, scene in enumerate(scenes):
            frame_id = f"{f:06d}"
            frame = scene.frame
            write_pcd(folder / "pointcloud" / f"{frame_id}.pcd", frame.cloud_lidar)
            poses = {}
            for person in frame.persons:
                joints_cam = regressor @ frame.truth[person.tracking_id].vertices
                poses[person.tracking_id] = transform_points(T_world_cam, joints_cam).reshape(-1).tolist()
            write_json_atomic(folder / "pose_calib" / f"{frame_id}.json", poses)
            _write_image(folder / "images" / camera / f"{frame_id}.jpg", frame.image)
            if keypoints:
                write_json_atomic(folder / "pose2d" / f"{frame_id}.json", keypoints_payload(
                    camera, {p.tracking_id: np.column_stack([p.keypoints, p.lidar_visibility]) for p in frame.persons}))
            if inits:
                write_json_atomic(folder / "init_smpl" / f"{frame_id}.json",
                                  inits_payload(sequence, frame_id, {p.tracking_id: p.init for p in frame.persons}))
    return root


def write_sloper4d_lookalike(root, body, sequence: str = "seq_test", frames: int = 3, seed: int = 0,
                             gender: str = "male", keypoints: bool = True, inits: bool = True, preset=None,
                             walking: bool = False) -> Path:
    """``<root>/<seq>/<seq>_labels.pkl`` + ``rgb_data/<seq>_imgs/`` (one subject per frame, the
    LiDAR moving through a z-up world). ``body`` is the model of ``gender`` (the labels' gender).
    Frames are independent random scenes, or with ``walking`` a simulated sequence at 20 Hz: one
    person walking while the rig drives (the world is the simulator's odom). ``preset``: the sensor
    (default sloper4d)."""
    folder = Path(root) / sequence
    preset = preset or get_preset("sloper4d")
    lidar2cam = preset.T_cam_lidar
    names, bboxes, traj, opt_pose, opt_trans, betas, clouds = [], [], [], [], [], [], []
    kp_frames, init_frames = {}, {}
    walk = (simulate_sequence(body, SequenceSettings(persons=1, frames=frames, fps=20.0, preset=preset, seed=seed,
                                                     moving_robot=True, crossings=False)) if walking else None)
    for f in range(frames):
        scene = walk[f].scene if walking else simulate_scene(body, persons=1, preset=preset, seed=seed + f)
        frame = scene.frame
        person = frame.persons[0]
        truth = frame.truth[person.tracking_id]
        if walking:
            lidar2world = walk[f].T_odom_cam @ lidar2cam
        else:
            lidar2world = np.eye(4)
            lidar2world[:3, :3] = Rotation.from_euler("z", 0.3 + 0.1 * f).as_matrix()
            lidar2world[:3, 3] = [0.5 * f, 0.2 * f, 1.2]
        world_cam = lidar2world @ rigid_inverse(lidar2cam)  # camera -> world
        world = transform_smpl(truth.smpl, world_cam, body)
        name = f"{f:06d}.jpg"
        names.append(name)
        x, y, w, h = person.bbox_xywh
        bboxes.append([float(x), float(y), float(x + w), float(y + h)])
        quat = Rotation.from_matrix(lidar2world[:3, :3]).as_quat()
        traj.append([f, *lidar2world[:3, 3], *quat, 0.05 * f])
        opt_pose.append(np.concatenate([world.global_orient, world.body_pose]))
        opt_trans.append(world.transl)
        betas.append(world.betas)
        clouds.append(transform_points(world_cam, person.points))
        _write_image(folder / "rgb_data" / f"{sequence}_imgs" / name, frame.image)
        kp_frames[Path(name).stem] = np.column_stack([person.keypoints, person.lidar_visibility]).tolist()
        init_frames[Path(name).stem] = person.init.to_dict()
    fx, fy = preset.K[0, 0], preset.K[1, 1]
    labels = {
        "frame_num": list(range(frames)),
        "RGB_info": {"width": preset.image_width, "height": preset.image_height,
                     "intrinsics": [fx, fy, preset.K[0, 2], preset.K[1, 2]], "lidar2cam": lidar2cam.tolist(),
                     "dist": [0.0] * 5},
        "RGB_frames": {"file_basename": names, "bbox": bboxes, "skel_2d": [[] for _ in names]},
        "first_person": {"lidar_traj": np.asarray(traj)},
        "second_person": {"opt_pose": np.asarray(opt_pose), "opt_trans": np.asarray(opt_trans),
                          "beta": np.asarray(betas), "gender": gender, "point_clouds": clouds,
                          "point_frame": list(range(frames))},
    }
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{sequence}_labels.pkl", "wb") as handle:
        pickle.dump(labels, handle, protocol=4)
    if keypoints:
        write_json_atomic(folder / f"{sequence}_keypoints.json", {"camera": sequence, "frames": kp_frames})
    if inits:
        write_json_atomic(folder / f"{sequence}_init_smpl.json", {"frames": init_frames})
    return folder


def write_demo_lookalike(root, body, frames: int = 2, persons: int = 2, seed: int = 0, sequence: str = "demo",
                         preset: str = "humanm3") -> Path:
    """``<root>/<frame>/`` scene folders (research demo format + camera.json, init and SMPL truth)."""
    root = Path(root)
    for f in range(frames):
        scene = simulate_scene(body, persons=persons, preset=preset, seed=seed + f)
        scene.frame.sequence, scene.frame.frame_id = sequence, f"{f:06d}"
        write_scene_folder(scene.frame, root / f"frame_{f:06d}", camera_name=f"sim_{preset}", cloud_labels=scene.cloud_labels)
    return root


#: COCO-17 limbs as the research results file lists them in ``info.skeleton2d``.
RESEARCH_SKELETON2D = ((0, 1), (1, 3), (0, 2), (2, 4), (5, 6), (5, 11), (11, 12), (12, 6), (5, 7), (7, 9), (6, 8),
                       (8, 10), (11, 13), (13, 15), (12, 14), (14, 16))


def write_published_demo_lookalike(root, body, persons: int = 2, seed: int = 0, sequence: str = "basketball1",
                                   frame_id: str = "1913", preset: str = "humanm3", camera_in_results: bool = True,
                                   points_in_lidar_frame: bool = False) -> Path:
    """One folder laid out exactly as the research repository's ``data/demo`` is published.

    ``<root>/`` gets ``data.pkl`` (list of {sequence, time = frame_id, tracking_id, pose3d (15, 3) m,
    bbox2d_xywh [4 ints], human_points (N, 3) m, img_file}), ``2d_keypoints.json`` ({"camera":
    "camera_1", <tracking_id>: 17 × [x, y, score, lidar_visibility]}), the image
    ``<timestamp>.jpeg`` and ``smpl_<frame_id>.json`` — and nothing else: no camera.json, no
    init_smpl.json, no SMPL ground truth (the truth is ``pose3d``). The results file has the
    published layout: {info {sequence, date_created, skeleton2d, camera_intrinsics}, image {image_id
    (int), file_name, width, height}, annotations {<tracking_id>: {idx (0, 1, ...: the index in the
    research data loader), bbox, keypoints 17 × [x, y, score, score, lidar_visibility], hmr
    {body_pose 69, betas 10, global_orient 3, global_t 3, joints3d 24 × 3}, reprojection_error,
    chamfer_distance}}}; its ``hmr`` holds the simulator's image-only initial estimate (camera frame)
    and the two scores are left at 0 (nothing reads them).

    Tracking ids are ``120 + 9 i`` for the simulator's person i (strings, not equal to ``idx``).
    camera_in_results: write the intrinsics into ``info.camera_intrinsics`` (else ``[]``, as the
    research template leaves it when unknown: the camera must then come from ``--camera`` /
    ``--intrinsics``). points_in_lidar_frame: write ``human_points`` and ``pose3d`` in the LiDAR frame
    (``--extrinsic`` with the preset's T_cam_lidar brings them back). Returns ``root``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    scene = simulate_scene(body, persons=persons, preset=preset, seed=seed)
    frame = scene.frame
    image_file = f"{1656236223200000000 + int(frame_id)}.jpeg"
    _write_image(root / image_file, frame.image)
    T_points = rigid_inverse(frame.T_cam_lidar) if points_in_lidar_frame else np.eye(4)
    records, keypoints, annotations = [], {}, {}
    for i, person in enumerate(frame.persons):
        tid = str(120 + 9 * i)
        records.append({
            "sequence": sequence, "time": frame_id, "tracking_id": tid,
            "pose3d": transform_points(T_points, person.pose3d),
            "bbox2d_xywh": [int(round(v)) for v in person.bbox_xywh],
            "human_points": transform_points(T_points, person.points),
            "img_file": image_file,
        })
        keypoints[tid] = np.column_stack([person.keypoints, person.lidar_visibility])
        init = person.init
        with torch.no_grad():
            joints = body(**{k: torch.as_tensor(np.asarray(v)[None], dtype=body.v_template.dtype, device=body.v_template.device)
                             for k, v in (("global_orient", init.global_orient), ("body_pose", init.body_pose),
                                          ("betas", init.betas), ("transl", init.transl))}).joints[0]
        annotations[tid] = {
            "idx": i,
            "bbox": [float(v) for v in records[-1]["bbox2d_xywh"]],
            "keypoints": np.column_stack([person.keypoints, person.keypoints[:, 2], person.lidar_visibility]).tolist(),
            "hmr": {"body_pose": init.body_pose.tolist(), "betas": init.betas.tolist(),
                    "global_orient": init.global_orient.tolist(), "global_t": init.transl.tolist(),
                    "joints3d": joints.double().cpu().numpy().tolist()},
            "reprojection_error": 0.0,
            "chamfer_distance": 0.0,
        }
    with open(root / "data.pkl", "wb") as handle:
        pickle.dump(records, handle, protocol=4)
    write_json_atomic(root / "2d_keypoints.json", keypoints_payload("camera_1", keypoints))
    write_json_atomic(root / f"smpl_{frame_id}.json", {
        "info": {"sequence": sequence,
                 "date_created": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
                 "skeleton2d": [list(limb) for limb in RESEARCH_SKELETON2D],
                 "camera_intrinsics": frame.camera.K.tolist() if camera_in_results else []},
        "image": {"image_id": int(frame_id), "file_name": image_file, "width": frame.camera.width,
                  "height": frame.camera.height},
        "annotations": annotations,
    })
    return root
