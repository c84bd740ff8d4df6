"""The synthetic-scene simulator: LiDAR on the true surfaces, occlusion, determinism, presets,
keypoints, the image-only init, poses, and the keypoint LiDAR-visibility mask."""
import os

import numpy as np
import open3d as o3d
import pytest
import torch

from smplify3d_core.body.default_model import default_body_model_dir
from smplify3d_core.body.model import SMPLBody
from smplify3d_core.body.tables import body_tables
from smplify3d_core.geometry.transforms import transform_points
from smplify3d_core.geometry.visibility import keypoint_lidar_visibility
from smplify3d_core.sim.lidar import BACKGROUND_LABEL, GROUND_LABEL, lidar_ray_directions
from smplify3d_core.sim.poses import POSE_NAMES, mirror_pose, named_pose, pose_corpus, sample_pose
from smplify3d_core.sim.presets import PRESETS, get_preset
from smplify3d_core.sim.scene import PersonPlacement, orientation_facing, simulate_scene
from smplify3d_core.types import PinholeCamera


@pytest.fixture(scope="module")
def body(tmp_path_factory):
    """The synthetic body model, built in a temporary cache unless one is configured already."""
    previous = os.environ.get("SMPLIFY3D_CACHE")
    if previous is None:
        os.environ["SMPLIFY3D_CACHE"] = str(tmp_path_factory.mktemp("smplify3d_cache"))
    try:
        yield SMPLBody.from_path(default_body_model_dir())
    finally:
        if previous is None:
            os.environ.pop("SMPLIFY3D_CACHE", None)


@pytest.fixture(scope="module")
def tables(body):
    return body_tables(body.data)


@pytest.fixture(scope="module")
def scene(body):
    return simulate_scene(body, persons=4, preset="humanm3", seed=0)


@pytest.fixture(scope="module")
def occlusion_scenes(body):
    """Person 1 standing 3 m directly behind person 0; and person 1 alone at the same spot."""
    front = PersonPlacement(distance=5.0, lateral=0.0, yaw=0.0, pose="standing")
    back = PersonPlacement(distance=8.0, lateral=0.0, yaw=0.0, pose="standing")
    both = simulate_scene(body, preset="humanm3", seed=5, placements=[front, back])
    alone = simulate_scene(body, preset="humanm3", seed=5, placements=[back])
    return both, alone


def _distance_to_mesh(vertices, faces, points):
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    return scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()


# ---------------------------------------------------------------------------- LiDAR
def test_lidar_points_lie_on_the_true_surface_of_their_person(scene, body):
    sigma = scene.preset.lidar_range_noise
    faces = np.asarray(body.faces)
    checked = 0
    for person in scene.frame.persons:
        truth = scene.frame.truth[person.tracking_id]
        if len(person.points) == 0:
            continue
        distance = _distance_to_mesh(truth.vertices, faces, person.points)
        assert distance.max() <= 4 * sigma + 0.005, (person.tracking_id, distance.max())
        checked += 1
        # and they are the points labelled with this person in the full scan, moved to the camera frame
        index = int(person.tracking_id)
        expected = transform_points(scene.frame.T_cam_lidar, scene.frame.cloud_lidar[scene.cloud_labels == index])
        np.testing.assert_allclose(person.points, expected, atol=1e-9)  # metres; coordinates cross 0
    assert checked >= 3


def test_ground_and_background_points_are_labelled(scene):
    cloud_cam = transform_points(scene.frame.T_cam_lidar, scene.frame.cloud_lidar)
    ground = cloud_cam[scene.cloud_labels == GROUND_LABEL]
    assert len(ground) > 1000
    assert np.abs(ground[:, 1] - scene.preset.camera_height).max() < 4 * scene.preset.lidar_range_noise + 0.005
    assert (scene.cloud_labels == BACKGROUND_LABEL).sum() > 0
    assert set(np.unique(scene.cloud_labels)) <= {GROUND_LABEL, BACKGROUND_LABEL, 0, 1, 2, 3}
    # background objects keep away from the people: none of their points is within 1 m of a person's pelvis
    background = cloud_cam[scene.cloud_labels == BACKGROUND_LABEL]
    for truth in scene.frame.truth.values():
        pelvis = truth.joints[0]
        horizontal = np.hypot(background[:, 0] - pelvis[0], background[:, 2] - pelvis[2])
        assert horizontal.min() > 1.0


def test_lidar_extrinsic_has_the_lidar_axes_and_sits_above_the_camera(scene):
    T = scene.frame.T_cam_lidar
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [0, 0, 1], atol=1e-9)  # LiDAR forward = camera z
    np.testing.assert_allclose(T[:3, :3] @ [0, 1, 0], [-1, 0, 0], atol=1e-9)  # LiDAR left = camera −x
    np.testing.assert_allclose(T[:3, :3] @ [0, 0, 1], [0, -1, 0], atol=1e-9)  # LiDAR up = camera −y
    assert -0.25 <= T[1, 3] <= -0.08
    # in the LiDAR frame the ground lies below the sensor: z ≈ −(camera height + LiDAR offset)
    ground = scene.frame.cloud_lidar[scene.cloud_labels == GROUND_LABEL]
    expected = -(scene.preset.camera_height - T[1, 3])
    assert abs(np.median(ground[:, 2]) - expected) < 0.02
    directions = lidar_ray_directions(scene.preset)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0)


def test_people_stand_on_the_ground_and_truth_matches_the_body_model(scene, body):
    for truth in scene.frame.truth.values():
        assert abs(truth.vertices[:, 1].max() - scene.preset.camera_height) < 1e-4
        p = truth.smpl
        out = body(
            global_orient=torch.tensor(p.global_orient[None], dtype=torch.float32),
            body_pose=torch.tensor(p.body_pose[None], dtype=torch.float32),
            betas=torch.tensor(p.betas[None], dtype=torch.float32),
            transl=torch.tensor(p.transl[None], dtype=torch.float32),
        )
        np.testing.assert_allclose(out.vertices[0].numpy(), truth.vertices, atol=1e-5)
        np.testing.assert_allclose(out.joints[0].numpy(), truth.joints, atol=1e-5)
    pelvises = np.array([t.joints[0] for t in scene.frame.truth.values()])
    near, far = scene.preset.distance_range
    assert np.all((pelvises[:, 2] >= near - 1e-6) & (pelvises[:, 2] <= far + 1e-6))
    gaps = [np.hypot(*(a - b)[[0, 2]]) for i, a in enumerate(pelvises) for b in pelvises[i + 1:]]
    assert min(gaps) >= scene.preset.min_separation - 1e-6


# ---------------------------------------------------------------------------- occlusion
def test_a_person_behind_another_is_occluded(occlusion_scenes):
    both, alone = occlusion_scenes
    front, back = both.frame.persons
    hidden = both.occluded[1]
    assert hidden.sum() >= 8, hidden
    assert np.all(back.keypoints[hidden, 2] < 0.3)
    assert not both.occluded[0].any()
    assert np.all(front.keypoints[:, 2] >= 0.35)
    # alone, the same person is seen whole
    assert not alone.occluded[0].any()
    assert np.all(alone.frame.persons[0].keypoints[:, 2] >= 0.35)
    # the front person blocks LiDAR rays too
    assert len(back.points) < 0.5 * len(alone.frame.persons[0].points)
    assert len(front.points) > len(back.points)


def test_a_person_seen_from_behind_has_uncertain_face_keypoints(body):
    scene = simulate_scene(
        body, preset="humanm3", seed=2, placements=[PersonPlacement(distance=6.0, yaw=np.pi, pose="standing")]
    )
    confidence = scene.frame.persons[0].keypoints[:, 2]
    assert np.all(scene.self_occluded[0, :3])  # nose and eyes are behind the head
    assert np.all(confidence[:3] <= scene.preset.self_occluded_confidence[1])
    assert np.all(confidence[:3] >= 0.3)  # uncertain, not "hidden by someone else"
    assert not scene.occluded[0].any()
    facing = simulate_scene(
        body, preset="humanm3", seed=2, placements=[PersonPlacement(distance=6.0, yaw=0.0, pose="standing")]
    )
    assert not facing.self_occluded[0, :3].any()


# ---------------------------------------------------------------------------- determinism
def _arrays(scene):
    frame = scene.frame
    arrays = [frame.image, frame.cloud_lidar, scene.cloud_labels]
    for person in frame.persons:
        arrays += [person.keypoints, person.points, person.lidar_visibility, person.bbox_xywh, person.pose3d]
        arrays += [person.init.global_orient, person.init.body_pose, person.init.betas, person.init.transl]
        truth = frame.truth[person.tracking_id]
        arrays += [truth.vertices, truth.smpl.body_pose, truth.smpl.transl]
    return arrays


def test_same_seed_same_scene_other_seed_other_scene(body, scene):
    again = simulate_scene(body, persons=4, preset="humanm3", seed=0)
    first, second = _arrays(scene), _arrays(again)
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert a.tobytes() == b.tobytes()
    other = simulate_scene(body, persons=4, preset="humanm3", seed=1)
    assert other.frame.cloud_lidar.shape != scene.frame.cloud_lidar.shape or not np.array_equal(
        other.frame.cloud_lidar, scene.frame.cloud_lidar
    )
    assert not np.array_equal(other.frame.persons[0].keypoints, scene.frame.persons[0].keypoints)
    assert not np.array_equal(other.frame.image, scene.frame.image)


# ---------------------------------------------------------------------------- presets
@pytest.mark.parametrize("name, low, high", [("humanm3", 250, 520), ("sloper4d", 700, 1300)])
def test_presets_give_the_dataset_point_densities(body, name, low, high):
    counts = np.concatenate([simulate_scene(body, persons=4, preset=name, seed=s).points_per_person() for s in range(3)])
    assert low <= counts.mean() <= high, counts


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError) as error:
        get_preset("kitti")
    for name in PRESETS:
        assert name in str(error.value)
    assert get_preset(PRESETS["sloper4d"]) is PRESETS["sloper4d"]


def test_a_frame_is_complete_and_every_point_labelled_once(body):
    """Another seed than the shared scene: the frame has its image, 4 persons and one label per LiDAR
    point, and each person's points are exactly the points labelled with that person."""
    scene = simulate_scene(body, persons=4, preset="humanm3", seed=11)
    frame = scene.frame
    assert frame.image.shape == (frame.camera.height, frame.camera.width, 3) and frame.image.dtype == np.uint8
    assert len(frame.persons) == len(scene.placements) == len(scene.pose_names) == 4
    assert scene.cloud_labels.shape == (len(frame.cloud_lidar),) and np.isfinite(frame.cloud_lidar).all()
    counts = [int((scene.cloud_labels == i).sum()) for i in range(4)]
    assert scene.points_per_person().tolist() == counts
    assert sum(counts) > 0


# ---------------------------------------------------------------------------- keypoints
def test_keypoints_are_the_projected_true_joints(scene, tables):
    camera = scene.frame.camera
    sigma = scene.preset.keypoint_noise_px
    for index, person in enumerate(scene.frame.persons):
        truth = scene.frame.truth[person.tracking_id]
        uv = camera.project(tables.coco17_regressor @ truth.vertices)
        confidence = person.keypoints[:, 2]
        inside = (uv[:, 0] >= -0.5) & (uv[:, 0] < camera.width - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < camera.height - 0.5)
        np.testing.assert_array_equal(inside, scene.in_image[index])
        assert np.all(confidence[~inside] == 0.0)
        assert np.all(confidence[inside] > 0.0)
        seen = inside & ~scene.occluded[index]
        error = np.linalg.norm(person.keypoints[:, :2] - uv, axis=1)
        clear = seen & ~scene.self_occluded[index]
        assert np.all(error[clear] < 5 * sigma)
        # self-occluded joints are guessed less precisely (noise x self_occluded_noise_scale)
        assert np.all(error[seen] < 5 * sigma * scene.preset.self_occluded_noise_scale)
        assert np.all(confidence[scene.occluded[index]] < 0.3)
        high = confidence >= scene.preset.visible_confidence[0]
        assert np.all(seen[high])
        # the box holds the visible keypoints
        x, y, w, h = person.bbox_xywh
        kp = uv[seen]
        assert np.all((kp[:, 0] >= x - 1) & (kp[:, 0] <= x + w + 1) & (kp[:, 1] >= y - 1) & (kp[:, 1] <= y + h + 1))
        np.testing.assert_allclose(person.pose3d, tables.humanm3_regressor @ truth.vertices, atol=1e-9)  # metres
        # the LiDAR flags follow the research method on the person's own points
        expected = keypoint_lidar_visibility(person.points, person.keypoints[:, :2], camera,
                                             scene.preset.lidar_visibility_kernel_px)
        np.testing.assert_array_equal(person.lidar_visibility, expected)


def test_rendered_image_shows_the_people(scene):
    frame = scene.frame
    image = frame.image
    assert image.shape == (frame.camera.height, frame.camera.width, 3) and image.dtype == np.uint8
    for index, person in enumerate(frame.persons):
        x, y, w, h = person.bbox_xywh
        crop = image[int(y): int(y + h), int(x): int(x + w)].reshape(-1, 3).astype(float)
        assert crop.std(axis=0).max() > 5.0  # the person differs from the flat ground/sky


# ---------------------------------------------------------------------------- image-only init
def test_init_is_wrong_in_depth_along_the_camera_ray(scene, body):
    camera = scene.frame.camera
    ratios = []
    for person in scene.frame.persons:
        truth = scene.frame.truth[person.tracking_id]
        init = person.init
        out = body(
            global_orient=torch.tensor(init.global_orient[None], dtype=torch.float32),
            body_pose=torch.tensor(init.body_pose[None], dtype=torch.float32),
            betas=torch.tensor(init.betas[None], dtype=torch.float32),
            transl=torch.tensor(init.transl[None], dtype=torch.float32),
        )
        pelvis_init = out.joints[0, 0].numpy().astype(np.float64)
        pelvis_true = truth.joints[0]
        ratios.append(pelvis_init[2] / pelvis_true[2])
        # same ray: the pelvis projects to the same pixel, and the 3D offset is parallel to the ray
        assert np.linalg.norm(camera.project(pelvis_init[None]) - camera.project(pelvis_true[None])) < 0.5
        ray = pelvis_true / np.linalg.norm(pelvis_true)
        offset = pelvis_init - pelvis_true
        assert np.linalg.norm(np.cross(offset, ray)) < 2e-3
        assert not np.allclose(init.body_pose, truth.smpl.body_pose, rtol=0, atol=1e-3)  # rad
        assert not np.allclose(init.betas, truth.smpl.betas, rtol=0, atol=1e-3)
    ratios = np.array(ratios)
    assert np.all(np.abs(ratios - 1.0) > 1e-4)
    assert np.all(np.abs(ratios - 1.0) < 3 * scene.preset.init_depth_sigma + 1e-6)


# ---------------------------------------------------------------------------- poses
def _model_frame_joints(body, pose):
    out = body(body_pose=torch.tensor(np.asarray(pose)[None], dtype=torch.float32))
    return out.joints[0].numpy()


def test_named_poses_move_the_joints_where_their_names_say(body):
    rest = _model_frame_joints(body, np.zeros(69))
    height = rest[15, 1] - rest[7, 1]  # head to ankle
    standing = _model_frame_joints(body, named_pose("standing"))
    for shoulder, wrist in ((16, 20), (17, 21)):
        assert standing[wrist, 1] < standing[shoulder, 1] - 0.25 * height  # arms hang down
    raised = _model_frame_joints(body, named_pose("arms_raised"))
    assert raised[20, 1] > raised[15, 1] and raised[21, 1] > raised[15, 1]  # wrists above the head
    crouch = _model_frame_joints(body, named_pose("crouching"))
    assert crouch[0, 1] - min(crouch[7, 1], crouch[8, 1]) < 0.7 * (rest[0, 1] - rest[7, 1])
    assert crouch[4, 2] > crouch[7, 2] + 0.1 and crouch[5, 2] > crouch[8, 2] + 0.1  # knees ahead of the ankles
    wave = _model_frame_joints(body, named_pose("waving", side="right"))
    assert wave[21, 1] > wave[19, 1] > wave[17, 1] - 0.1  # right wrist above the elbow, elbow ~shoulder high
    assert wave[20, 1] < wave[16, 1] - 0.2  # the other arm hangs
    point = _model_frame_joints(body, named_pose("pointing", side="left"))
    assert point[20, 2] > point[16, 2] + 0.3 * height / 1.7  # left wrist well in front of the shoulder
    hips = _model_frame_joints(body, named_pose("hands_on_hips"))
    for wrist, hip in ((20, 1), (21, 2)):
        assert abs(hips[wrist, 1] - rest[0, 1]) < 0.2  # wrists at pelvis height
        assert np.abs(hips[wrist, 0]) < np.abs(hips[wrist - 2, 0]) - 0.05  # wrist inward of the elbow
    walk = _model_frame_joints(body, named_pose("walking", phase=np.pi / 2))
    assert walk[7, 2] > walk[8, 2] + 0.15  # left foot forward
    assert walk[21, 2] > walk[20, 2] + 0.05  # right arm forward
    np.testing.assert_array_equal(named_pose("t_pose"), np.zeros(69))


def test_sampled_poses_and_corpus(body):
    rng = np.random.default_rng(0)
    names = {sample_pose(rng)[0] for _ in range(200)}
    assert names == set(POSE_NAMES)
    corpus = pose_corpus(500, seed=3)
    assert corpus.shape == (500, 69) and np.all(np.isfinite(corpus))
    np.testing.assert_array_equal(corpus, pose_corpus(500, seed=3))
    assert corpus.std(axis=0).mean() > 0.1
    pose = named_pose("waving", side="right")
    np.testing.assert_allclose(mirror_pose(pose), named_pose("waving", side="left"), atol=1e-9)


def test_facing_orientation_turns_the_person_toward_the_camera(body):
    out = body(global_orient=torch.tensor(orientation_facing(0.0)[None], dtype=torch.float32))
    joints = out.joints[0].numpy()
    assert joints[15, 1] < joints[7, 1]  # head above (smaller y) than the ankle in the camera frame
    assert joints[16, 0] > joints[17, 0]  # the person's left shoulder appears on the image right
    vertices = out.vertices[0].numpy()
    nose = vertices[332]
    assert nose[2] < joints[15, 2]  # the face points toward the camera (−z)


# ---------------------------------------------------------------------------- visibility
def test_keypoint_lidar_visibility_on_a_hand_made_case():
    camera = PinholeCamera(np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]]), 640, 480)
    # a 3×3 grid of points 1 cm apart at 2 m in front of the principal point
    grid = np.array([[x, y, 2.0] for x in (-0.01, 0, 0.01) for y in (-0.01, 0, 0.01)])
    keypoints = np.array(
        [
            [320.0, 240.0],  # on the points
            [340.0, 240.0],  # 20 px away: inside the 50 px dilation
            [320.0, 300.0],  # 60 px away: outside
            [-5.0, 240.0],  # outside the image
            [np.nan, np.nan],  # undetected
        ]
        + [[0.0, 0.0]] * 12
    )
    flags = keypoint_lidar_visibility(grid, keypoints, camera, kernel_px=50)
    assert flags.shape == (17,)
    np.testing.assert_array_equal(flags[:5], [1, 1, 0, 0, 0])
    assert np.all(flags[5:] == 0)
    # a bigger kernel reaches the third keypoint; no dilation leaves only the hit pixels
    assert keypoint_lidar_visibility(grid, keypoints, camera, kernel_px=130)[2] == 1
    assert keypoint_lidar_visibility(grid, keypoints, camera, kernel_px=1)[1] == 0
    # points behind the camera or no points at all: nothing is visible
    assert keypoint_lidar_visibility(grid * [1, 1, -1], keypoints, camera).sum() == 0
    assert keypoint_lidar_visibility(np.zeros((0, 3)), keypoints, camera).sum() == 0
