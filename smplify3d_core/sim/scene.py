"""Synthetic frames with ground truth: posed people on a ground plane, a camera, a LiDAR.

:func:`simulate_scene` places people (random or hand-built :class:`PersonPlacement`), casts the
LiDAR scan and renders the image, then makes what the front-ends would give the fitting code:
noisy COCO-17 keypoints with confidences (low where another person or object hides a joint),
the per-keypoint LiDAR visibility, each person's LiDAR points in the camera frame and an
"image-only" initial SMPL estimate whose main error is the depth along the camera ray.

World = the camera frame (x right, y down, z forward); the camera looks horizontally from
``preset.camera_height`` metres above the ground, which is the plane ``y = camera_height``.
The LiDAR sits at ``preset.T_cam_lidar`` (LiDAR frame x forward, y left, z up).

SMPL bodies are posed in the camera frame: a person standing upright facing the camera has the
global orientation ``R_up(yaw) · R_x(π)`` (model y-up → camera y-down, model +z facing → −z).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from smplify3d_core.body.tables import body_tables
from smplify3d_core.geometry.transforms import transform_points
from smplify3d_core.geometry.visibility import keypoint_lidar_visibility
from smplify3d_core.sim.lidar import Mesh, simulate_lidar_scan
from smplify3d_core.sim.poses import named_pose, sample_pose
from smplify3d_core.sim.presets import SimPreset, get_preset
from smplify3d_core.sim.render import render_scene
from smplify3d_core.types import FrameObservation, PersonObservation, PersonTruth, PinholeCamera, SMPLParams

BODY_HALF_WIDTH = 0.45  # metres kept between a person's pelvis and the image border (arms, shoulders)
# a keypoint more than this behind its own body's surface is self-occluded, metres: body joints lie
# inside the body (≈0.1 m under the skin), the face keypoints (nose, eyes, ears) are surface vertices
SELF_OCCLUSION_MARGIN = np.array([0.05] * 5 + [0.2] * 12)


@dataclass
class PersonPlacement:
    """A hand-built person.

    distance: depth of the pelvis along the optical axis (camera z), metres.
    lateral: sideways position of the pelvis (camera x, positive = right in the image), metres.
    yaw: rotation about the vertical (up) axis, radians, right-handed about "up"; 0 faces the
        camera, ±π shows the back.
    pose: a pose name of :mod:`smplify3d_core.sim.poses` (its default parameters) or a (69,) body pose.
    betas: (10,) shape coefficients, or None for the mean shape (zeros).
    height: height of the pelvis above the ground, metres; None (default) stands the body on the
        ground (its lowest vertex on the plane), which is what a single frame wants. A sequence
        gives a smooth height instead, so that the pelvis does not jump when the lowest vertex
        switches from one foot to the other.
    """

    distance: float
    lateral: float = 0.0
    yaw: float = 0.0
    pose: Union[str, np.ndarray] = "standing"
    betas: Optional[np.ndarray] = None
    height: Optional[float] = None

    def body_pose(self) -> np.ndarray:
        """(69,) axis-angle body pose, radians."""
        if isinstance(self.pose, str):
            return named_pose(self.pose)
        pose = np.asarray(self.pose, dtype=np.float64).reshape(-1)
        if pose.shape != (69,):
            raise ValueError(f"a placement's pose must be a name or a (69,) body pose, got shape {pose.shape}")
        return pose

    @property
    def pose_name(self) -> str:
        return self.pose if isinstance(self.pose, str) else "custom"


@dataclass
class SimulatedScene:
    """One simulated frame and everything needed to judge a fit against it.

    frame: the observation (camera, ``T_cam_lidar``, persons with keypoints, LiDAR visibility,
        points in the camera frame, image-only ``init`` and ``pose3d``; the RGB image; the full
        scan ``cloud_lidar`` (N, 3) in the LiDAR frame; ``truth`` keyed by tracking id).
    cloud_labels: (N,) int64 label of every point of ``frame.cloud_lidar``: person index ≥ 0 (the
        person ``frame.persons[index]``; tracking id ``str(index)`` unless ids were given), −1 ground,
        −2 background object.
    preset: the :class:`SimPreset` used; seed: the seed of the numpy Generator.
    placements: the realised placements (one per person, same order as ``frame.persons``).
    pose_names: name of each person's pose.
    occluded: (P, 17) bool — keypoint hidden by another person or object (low confidence).
    self_occluded: (P, 17) bool — keypoint hidden by the person's own body (medium confidence).
    in_image: (P, 17) bool — true keypoint inside the image.
    background_meshes: the background objects, (vertices, faces) in the camera frame.
    """

    frame: FrameObservation
    cloud_labels: np.ndarray
    preset: SimPreset
    seed: int
    placements: List[PersonPlacement] = field(default_factory=list)
    pose_names: List[str] = field(default_factory=list)
    occluded: Optional[np.ndarray] = None
    self_occluded: Optional[np.ndarray] = None
    in_image: Optional[np.ndarray] = None
    background_meshes: List[Mesh] = field(default_factory=list)

    def points_per_person(self) -> np.ndarray:
        """(P,) number of LiDAR points on each person."""
        return np.array([len(p.points) for p in self.frame.persons], dtype=np.int64)


# ---------------------------------------------------------------------------- world meshes
def ground_mesh(camera_height: float, extent: float) -> Mesh:
    """A square ground plane ``y = camera_height`` (camera frame), ``extent`` metres a side, centred under the camera."""
    h, e = float(camera_height), float(extent) / 2.0
    vertices = np.array([[-e, h, -e], [e, h, -e], [e, h, e], [-e, h, e]], dtype=np.float64)
    faces = np.array([[0, 2, 1], [0, 3, 2]], dtype=np.int64)
    return vertices, faces


def box_mesh(center_xz: Sequence[float], size: Sequence[float], yaw: float, ground_y: float) -> Mesh:
    """A box standing on the ground: ``size`` = (width x, height, depth z) metres, turned ``yaw`` rad
    about the vertical, its footprint centred at camera-frame (x, z) = ``center_xz``."""
    sx, sy, sz = (float(v) / 2.0 for v in size)
    corners = np.array([[x, y, z] for x in (-sx, sx) for y in (-sy, sy) for z in (-sz, sz)])
    rotation = Rotation.from_euler("y", yaw).as_matrix()
    vertices = corners @ rotation.T + np.array([center_xz[0], ground_y - sy, center_xz[1]])
    # corner index = 4·ix + 2·iy + iz
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([[a, b, c] for a, b, c, d in quads] + [[a, c, d] for a, b, c, d in quads], dtype=np.int64)
    return vertices, faces


def pole_mesh(center_xz: Sequence[float], radius: float, height: float, ground_y: float, sides: int = 12) -> Mesh:
    """A vertical cylinder (``sides``-gon prism, capped) standing on the ground, metres."""
    angles = np.linspace(0.0, 2 * np.pi, sides, endpoint=False)
    ring = np.stack([radius * np.cos(angles), np.zeros(sides), radius * np.sin(angles)], axis=1)
    bottom = ring + np.array([center_xz[0], ground_y, center_xz[1]])
    top = bottom - np.array([0.0, height, 0.0])
    caps = np.array([[center_xz[0], ground_y, center_xz[1]], [center_xz[0], ground_y - height, center_xz[1]]])
    vertices = np.concatenate([bottom, top, caps])
    faces = []
    for i in range(sides):
        j = (i + 1) % sides
        faces += [[i, j, sides + j], [i, sides + j, sides + i]]
        faces += [[2 * sides, j, i], [2 * sides + 1, sides + i, sides + j]]
    return vertices, np.array(faces, dtype=np.int64)


def _place_background(
    rng: np.random.Generator,
    preset: SimPreset,
    person_xz: np.ndarray,
    count: int,
) -> List[Mesh]:
    """``count`` boxes/poles/walls on the ground, ≥ 1.5 m from every person and never between
    the sensors and a person (so they do not occlude anyone)."""
    meshes: List[Mesh] = []
    ground_y = preset.camera_height
    near, far = preset.distance_range
    half_fov = preset.horizontal_fov / 2.0
    farthest = float(person_xz[:, 1].max()) if len(person_xz) else far
    wall_made = False
    for _ in range(count):
        kind = rng.choice(["box", "pole", "wall"], p=[0.45, 0.4, 0.15])
        if kind == "wall" and wall_made:
            kind = "box"
        # draw the shape first so that the draw count does not depend on the tries below
        size = np.array([rng.uniform(0.4, 1.6), rng.uniform(0.4, 1.4), rng.uniform(0.4, 1.6)])
        radius, height = rng.uniform(0.05, 0.15), rng.uniform(2.0, 4.0)
        wall_width, wall_height = rng.uniform(4.0, 10.0), rng.uniform(2.0, 3.5)
        yaw = rng.uniform(-np.pi, np.pi)
        candidates = rng.random((60, 2))
        if kind == "wall":
            depth = max(farthest, far) + 2.0 + 4.0 * candidates[0, 0]
            lateral = depth * np.tan(half_fov) * (candidates[0, 1] - 0.5)
            meshes.append(box_mesh((lateral, depth), (wall_width, wall_height, 0.25), 0.0, ground_y))
            wall_made = True
            continue
        footprint = float(np.hypot(size[0], size[2]) / 2.0) if kind == "box" else float(radius)
        for u, v in candidates:
            depth = near + (far + 4.0 - near) * u
            lateral = depth * np.tan(half_fov) * (2.0 * v - 1.0) * 0.95
            ok = True
            for px, pz in person_xz:
                if np.hypot(lateral - px, depth - pz) < 1.5 + footprint:
                    ok = False
                    break
                # no occlusion: the object must not overlap the person's bearing while nearer than them
                gap = abs(np.arctan2(lateral, depth) - np.arctan2(px, pz))
                span = (footprint + 0.3) / depth + (BODY_HALF_WIDTH + 0.3) / pz
                if depth < pz + 1.0 and gap < span:
                    ok = False
                    break
            if not ok:
                continue
            if kind == "box":
                meshes.append(box_mesh((lateral, depth), size, yaw, ground_y))
            else:
                meshes.append(pole_mesh((lateral, depth), radius, height, ground_y))
            break
    return meshes


# ---------------------------------------------------------------------------- people
def orientation_facing(yaw: float) -> np.ndarray:
    """(3,) axis-angle global orientation of an upright person with ``yaw`` (see :class:`PersonPlacement`)."""
    # "up" is −y in the camera frame, so a right-handed turn about up is R_y(−yaw)
    matrix = Rotation.from_euler("y", -yaw).as_matrix() @ Rotation.from_euler("x", np.pi).as_matrix()
    return Rotation.from_matrix(matrix).as_rotvec()


def _random_placements(rng: np.random.Generator, count: int, preset: SimPreset) -> Tuple[List[PersonPlacement], List[str]]:
    """``count`` random placements and the names of their sampled poses."""
    near, far = preset.distance_range
    tan_half = np.tan(preset.horizontal_fov / 2.0)
    chosen: List[Tuple[float, float]] = []
    placements: List[PersonPlacement] = []
    names: List[str] = []
    for _ in range(count):
        candidates = rng.random((200, 2))
        position = None
        for u, v in candidates:
            depth = near + (far - near) * u
            half = max(depth * tan_half - BODY_HALF_WIDTH, 0.0)
            lateral = half * (2.0 * v - 1.0)
            if all(np.hypot(lateral - x, depth - z) >= preset.min_separation for x, z in chosen):
                position = (float(depth), float(lateral))
                break
        if position is None:
            raise RuntimeError(
                f"could not place {count} persons {preset.min_separation} m apart in {preset.distance_range} m; "
                "ask for fewer persons or a wider distance range"
            )
        yaw = float(rng.uniform(-np.pi, np.pi))
        name, pose = sample_pose(rng)
        betas = np.clip(rng.normal(0.0, preset.betas_sigma, size=10), -preset.betas_clip, preset.betas_clip)
        chosen.append((position[1], position[0]))
        placements.append(PersonPlacement(distance=position[0], lateral=position[1], yaw=yaw, pose=pose, betas=betas))
        names.append(name)
    return placements, names


def _forward(body, global_orient: np.ndarray, body_pose: np.ndarray, betas: np.ndarray, transl: np.ndarray):
    """Numpy in, numpy out (float64) SMPL forward pass: vertices (B, V, 3), joints (B, 24, 3)."""
    dtype = body.v_template.dtype
    device = body.v_template.device
    with torch.no_grad():
        out = body(
            global_orient=torch.as_tensor(global_orient, dtype=dtype, device=device),
            body_pose=torch.as_tensor(body_pose, dtype=dtype, device=device),
            betas=torch.as_tensor(betas[:, : body.num_betas], dtype=dtype, device=device),
            transl=torch.as_tensor(transl, dtype=dtype, device=device),
        )
    return out.vertices.cpu().numpy().astype(np.float64), out.joints.cpu().numpy().astype(np.float64)


def _random_rotation_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """(3, 3) rotation about a uniformly random axis by an N(0, sigma²) angle."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return Rotation.from_rotvec(axis * rng.normal(0.0, sigma)).as_matrix()


# ---------------------------------------------------------------------------- main entry
def simulate_scene(
    body,
    persons: int = 4,
    preset: Union[str, SimPreset] = "humanm3",
    seed: int = 0,
    placements: Optional[Sequence[PersonPlacement]] = None,
    background: Optional[Sequence[Mesh]] = None,
    tracking_ids: Optional[Sequence[str]] = None,
) -> SimulatedScene:
    """Simulate one synchronized camera + LiDAR frame.

    body: an :class:`~smplify3d_core.body.model.SMPLBody` (synthetic or real SMPL).
    persons: number of randomly placed persons (ignored when ``placements`` is given).
    preset: a preset name (``"humanm3"``, ``"sloper4d"``) or a :class:`SimPreset`.
    seed: seed of the numpy Generator; the same seed gives byte-identical arrays.
    placements: hand-built persons; random poses/betas/positions are drawn otherwise
        (pelvises ≥ ``preset.min_separation`` apart, inside the camera's horizontal field of view,
        depth in ``preset.distance_range``; yaw uniform; betas N(0, betas_sigma²) clipped).
    background: static objects, (vertices (V, 3) metres, faces (F, 3)) meshes in the camera frame,
        used instead of the ``preset.background_objects`` random ones (which are drawn when None).
        Nothing is drawn from the Generator for them then, so a sequence can give the same world
        objects in every frame.
    tracking_ids: one id per person (same order as the placements) for ``frame.persons`` and the
        keys of ``frame.truth``; default ``"0"``, ``"1"``, ... The labels of ``cloud_labels`` stay
        the person's index either way.

    Keypoints: (17, 3) = noisy projection of the true COCO-17 joints (pixels) and a confidence:
    ``visible_confidence`` when the joint is seen; lower (``occluded_confidence``, < 0.3) when
    another person or object is in front of it at its pixel (pixel noise ×``occluded_noise_scale``);
    ``self_occluded_confidence`` (0.35–0.65) when the person's own body hides it (a surface more than 0.2 m in
    front of a body joint, 0.05 m in front of a face keypoint: the far wrist behind the torso, the
    face of a person seen from behind); 0.0 when the true joint
    projects outside the image. Coordinates are never clipped: a keypoint outside the image keeps
    its (noisy) projected position with confidence 0.
    """
    preset = get_preset(preset)
    rng = np.random.default_rng(seed)
    camera = PinholeCamera(preset.K, preset.image_width, preset.image_height)
    T_cam_lidar = preset.T_cam_lidar
    tables = body_tables(body.data)

    if placements is None:
        placements, pose_names = _random_placements(rng, int(persons), preset)
    else:
        placements = list(placements)
        pose_names = [p.pose_name for p in placements]
    count = len(placements)
    if tracking_ids is None:
        tracking_ids = [str(i) for i in range(count)]
    tracking_ids = [str(t) for t in tracking_ids]
    if len(tracking_ids) != count or len(set(tracking_ids)) != count:
        raise ValueError(f"tracking_ids must be {count} distinct ids (one per person), got {tracking_ids}")

    # ---- pose the bodies: rotate about the pelvis, then stand them on the ground
    if count:
        global_orient = np.stack([orientation_facing(p.yaw) for p in placements])
        body_pose = np.stack([p.body_pose() for p in placements])
        betas = np.stack(
            [np.zeros(10) if p.betas is None else np.asarray(p.betas, dtype=np.float64).reshape(10) for p in placements]
        )
        vertices0, joints0 = _forward(body, global_orient, body_pose, betas, np.zeros((count, 3)))
        transl = np.zeros((count, 3))
        for i, p in enumerate(placements):
            pelvis = joints0[i, 0]
            lowest = vertices0[i, :, 1].max()  # y points down: the lowest point has the largest y
            # the ground is y = camera_height; without a height the lowest vertex stands on it
            down = preset.camera_height - lowest if p.height is None else preset.camera_height - p.height - pelvis[1]
            transl[i] = [p.lateral - pelvis[0], down, p.distance - pelvis[2]]
        vertices = vertices0 + transl[:, None]
        joints = joints0 + transl[:, None]
    else:
        global_orient = body_pose = betas = transl = np.zeros((0, 3))
        vertices = np.zeros((0, body.data.num_vertices, 3))
        joints = np.zeros((0, 24, 3))
    faces = np.asarray(body.faces, dtype=np.int64)
    person_meshes = [(vertices[i], faces) for i in range(count)]

    # ---- world: ground and background objects
    ground = [ground_mesh(preset.camera_height, preset.ground_extent)]
    person_xz = np.array([[p.lateral, p.distance] for p in placements]).reshape(-1, 2)
    if background is None:
        background = _place_background(rng, preset, person_xz, preset.background_objects)
    else:
        background = [(np.asarray(v, dtype=np.float64), np.asarray(f, dtype=np.int64)) for v, f in background]

    # ---- sensors
    cloud_lidar, cloud_labels = simulate_lidar_scan(person_meshes, preset, rng, T_cam_lidar, ground, background)
    image, person_index, depth = render_scene(camera, person_meshes, None, ground, background)

    # ---- per-person observations
    observations: List[PersonObservation] = []
    truth = {}
    occluded_all = np.zeros((count, 17), dtype=bool)
    self_occluded_all = np.zeros((count, 17), dtype=bool)
    in_image_all = np.zeros((count, 17), dtype=bool)
    init_params = _init_estimates(body, rng, preset, global_orient, body_pose, betas, joints) if count else []
    for i in range(count):
        tracking_id = tracking_ids[i]
        coco = tables.coco17_regressor @ vertices[i]  # (17, 3)
        uv = camera.project(coco)
        pixel = np.floor(uv + 0.5).astype(np.int64)
        in_image = (
            (pixel[:, 0] >= 0) & (pixel[:, 0] < camera.width) & (pixel[:, 1] >= 0) & (pixel[:, 1] < camera.height)
        )
        seen_index = np.full(17, -1)
        seen_depth = np.full(17, np.inf)
        seen_index[in_image] = person_index[pixel[in_image, 1], pixel[in_image, 0]]
        seen_depth[in_image] = depth[pixel[in_image, 1], pixel[in_image, 0]]
        in_front = seen_depth < coco[:, 2] - preset.occlusion_margin
        occluded = in_image & (seen_index != i) & in_front
        self_occluded = in_image & (seen_index == i) & (seen_depth < coco[:, 2] - SELF_OCCLUSION_MARGIN)

        noise = rng.normal(0.0, preset.keypoint_noise_px, size=(17, 2))
        confidence = rng.uniform(*preset.visible_confidence, size=17)
        low_confidence = rng.uniform(*preset.occluded_confidence, size=17)
        self_confidence = rng.uniform(*preset.self_occluded_confidence, size=17)
        noise[occluded] *= preset.occluded_noise_scale
        noise[self_occluded & ~occluded] *= preset.self_occluded_noise_scale
        confidence = np.where(self_occluded, np.minimum(confidence, self_confidence), confidence)
        confidence = np.where(occluded, low_confidence, confidence)
        confidence = np.where(in_image, confidence, 0.0)
        keypoints = np.concatenate([uv + noise, confidence[:, None]], axis=1)

        points_cam = transform_points(T_cam_lidar, cloud_lidar[cloud_labels == i])
        lidar_visibility = keypoint_lidar_visibility(points_cam, keypoints[:, :2], camera, preset.lidar_visibility_kernel_px)

        projected = camera.project(vertices[i])
        x0, y0 = np.clip(np.nanmin(projected, axis=0), 0, [camera.width, camera.height])
        x1, y1 = np.clip(np.nanmax(projected, axis=0), 0, [camera.width, camera.height])
        bbox = np.array([x0, y0, x1 - x0, y1 - y0])

        true_params = SMPLParams(global_orient[i], body_pose[i], betas[i], transl[i])
        observations.append(
            PersonObservation(
                tracking_id=tracking_id,
                bbox_xywh=bbox,
                keypoints=keypoints,
                lidar_visibility=lidar_visibility,
                points=points_cam,
                init=init_params[i],
                pose3d=tables.humanm3_regressor @ vertices[i],
            )
        )
        truth[tracking_id] = PersonTruth(tracking_id, true_params, vertices[i].copy(), joints[i].copy())
        occluded_all[i] = occluded
        self_occluded_all[i] = self_occluded & ~occluded
        in_image_all[i] = in_image

    frame = FrameObservation(
        sequence=f"sim_{preset.name}",
        frame_id=f"{int(seed):06d}",
        camera=camera,
        T_cam_lidar=T_cam_lidar,
        persons=observations,
        image=image,
        image_file=None,
        cloud_lidar=cloud_lidar,
        truth=truth,
    )
    return SimulatedScene(
        frame=frame,
        cloud_labels=cloud_labels,
        preset=preset,
        seed=int(seed),
        placements=list(placements),
        pose_names=pose_names,
        occluded=occluded_all,
        self_occluded=self_occluded_all,
        in_image=in_image_all,
        background_meshes=background,
    )


def _init_estimates(
    body,
    rng: np.random.Generator,
    preset: SimPreset,
    global_orient: np.ndarray,
    body_pose: np.ndarray,
    betas: np.ndarray,
    joints: np.ndarray,
) -> List[SMPLParams]:
    """Image-only (CLIFF-like) estimates: noisy orientation, pose and shape, and the pelvis moved
    along its camera ray to s × its true depth, s = 1 + N(0, init_depth_sigma²) clipped to ±3σ."""
    count = len(global_orient)
    sigma = preset.init_depth_sigma
    scale = 1.0 + np.clip(rng.normal(0.0, sigma, size=count), -3 * sigma, 3 * sigma)
    orient = np.stack(
        [
            Rotation.from_matrix(
                _random_rotation_noise(rng, preset.init_orient_sigma) @ Rotation.from_rotvec(global_orient[i]).as_matrix()
            ).as_rotvec()
            for i in range(count)
        ]
    )
    pose = body_pose + rng.normal(0.0, preset.init_pose_sigma, size=body_pose.shape)
    shape = betas + rng.normal(0.0, preset.init_betas_sigma, size=betas.shape)
    # the pelvis joint does not move with the pose: the rest pelvis of the estimated shape
    _, rest_joints = _forward(body, np.zeros((count, 3)), np.zeros((count, 69)), shape, np.zeros((count, 3)))
    pelvis_true = joints[:, 0]
    transl = scale[:, None] * pelvis_true - rest_joints[:, 0]
    return [SMPLParams(orient[i], pose[i], shape[i], transl[i]) for i in range(count)]
