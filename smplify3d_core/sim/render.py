"""A tiny deterministic renderer: one ray per pixel (open3d ray casting), flat Lambert shading.

It is not meant to look photographic; it gives the simulator a plausible RGB image, a per-pixel
person index (for keypoint occlusion) and a depth map.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from smplify3d_core.sim.lidar import BACKGROUND_LABEL, GROUND_LABEL, NO_HIT, Mesh, cast_rays
from smplify3d_core.types import PinholeCamera

# Distinct, saturated-but-not-garish clothing colours (RGB, 0..1), cycled over persons.
PERSON_PALETTE = np.array(
    [
        [0.85, 0.33, 0.25],
        [0.25, 0.50, 0.85],
        [0.30, 0.70, 0.35],
        [0.90, 0.70, 0.20],
        [0.60, 0.35, 0.75],
        [0.20, 0.70, 0.70],
        [0.85, 0.45, 0.65],
        [0.55, 0.55, 0.55],
    ]
)
SKY_COLOR = np.array([0.62, 0.76, 0.92])
SKY_HORIZON_COLOR = np.array([0.85, 0.90, 0.95])
GROUND_COLOR = np.array([0.47, 0.45, 0.40])
BACKGROUND_COLOR = np.array([0.70, 0.66, 0.58])
# unit vector pointing toward the light, camera frame (x right, y down, z forward): up, left, behind the camera
DEFAULT_LIGHT = np.array([-0.35, -0.8, -0.5]) / np.linalg.norm([-0.35, -0.8, -0.5])


def pixel_rays(camera: PinholeCamera) -> np.ndarray:
    """(H, W, 3) unit ray directions through the pixel centres (integer pixel coordinates), camera frame."""
    u, v = np.meshgrid(np.arange(camera.width, dtype=np.float64), np.arange(camera.height, dtype=np.float64))
    directions = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], axis=-1)
    return directions / np.linalg.norm(directions, axis=-1, keepdims=True)


def render_scene(
    camera: PinholeCamera,
    person_meshes: Sequence[Mesh],
    colors: Optional[np.ndarray] = None,
    ground_meshes: Sequence[Mesh] = (),
    background_meshes: Sequence[Mesh] = (),
    light_direction: np.ndarray = DEFAULT_LIGHT,
    up: Tuple[float, float, float] = (0.0, -1.0, 0.0),
    ambient: float = 0.35,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render the scene seen by ``camera``.

    person_meshes / ground_meshes / background_meshes: (vertices (V, 3), faces (F, 3)) in the
        camera frame (x right, y down, z forward), metres.
    colors: (P, 3) person colours, RGB in [0, 1] (or uint8 0..255); default: :data:`PERSON_PALETTE`.
    light_direction: (3,) direction toward the light, camera frame.
    up: (3,) world up in the camera frame; rays that miss everything are sky above the horizon
        and (far) ground below it.
    ambient: share of the colour kept in the shadow (Lambert: ambient + (1 − ambient)·max(0, n·l)).

    Returns ``(image, person_index, depth)``: image (H, W, 3) uint8 RGB; person_index (H, W) int64
    with the index of the person seen at each pixel, −1 where none; depth (H, W) float64 metres
    along the optical axis (camera z) of the first surface, ``inf`` where the ray hits nothing.
    Triangles are two-sided (normals are flipped to face the camera); shading uses face normals.
    """
    directions = pixel_rays(camera).reshape(-1, 3)
    meshes = list(person_meshes) + list(ground_meshes) + list(background_meshes)
    labels = (
        list(range(len(person_meshes)))
        + [GROUND_LABEL] * len(ground_meshes)
        + [BACKGROUND_LABEL] * len(background_meshes)
    )
    hits = cast_rays(meshes, labels, np.zeros((1, 3)), directions)

    if colors is None:
        colors = PERSON_PALETTE[np.arange(len(person_meshes)) % len(PERSON_PALETTE)]
    colors = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
    if colors.max(initial=0.0) > 1.0:
        colors = colors / 255.0
    if len(colors) < len(person_meshes):
        raise ValueError(f"{len(person_meshes)} persons but only {len(colors)} colours")

    up = np.asarray(up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    light = np.asarray(light_direction, dtype=np.float64)
    light = light / np.linalg.norm(light)

    count = len(directions)
    base = np.empty((count, 3))
    elevation = directions @ up
    sky = elevation >= 0
    blend = np.clip(elevation / 0.35, 0.0, 1.0)[:, None]
    base[:] = GROUND_COLOR
    base[sky] = (SKY_HORIZON_COLOR * (1 - blend) + SKY_COLOR * blend)[sky]
    shade = np.ones(count)

    hit = hits.label != NO_HIT
    person = hits.label >= 0
    base[hits.label == GROUND_LABEL] = GROUND_COLOR
    base[hits.label == BACKGROUND_LABEL] = BACKGROUND_COLOR
    base[person] = colors[hits.label[person]]
    normals = hits.normal
    facing = np.sum(normals * directions, axis=1)
    normals = np.where(facing[:, None] > 0, -normals, normals)
    lambert = np.clip(normals @ light, 0.0, 1.0)
    shade[hit] = ambient + (1.0 - ambient) * lambert[hit]
    # the ground (hit, or beyond its extent below the horizon) is lit from above whatever its winding
    ground = (hits.label == GROUND_LABEL) | (~hit & ~sky)
    shade[ground] = ambient + (1.0 - ambient) * max(float(up @ light), 0.0)
    image = np.clip(base * shade[:, None] * 255.0 + 0.5, 0, 255).astype(np.uint8)

    person_index = np.where(person, hits.label, -1).astype(np.int64)
    depth = hits.t_hit * directions[:, 2]
    depth[~hit] = np.inf
    shape = (camera.height, camera.width)
    return image.reshape(*shape, 3), person_index.reshape(shape), depth.reshape(shape)
