"""CLIFF in plain PyTorch: checkpoint layout, regressor, camera conversions, estimator, bad input."""
from pathlib import Path

import numpy as np
import pytest
import torch

from smplify3d_core.geometry.rotations import axis_angle_to_matrix, matrix_to_rot6d
from smplify3d_core.perception.checkpoints import CheckpointError
from smplify3d_core.perception.cliff import (
    CLIFF,
    CROP_HEIGHT,
    CROP_WIDTH,
    CliffEstimator,
    cam_crop2full,
    crop_matrix,
    crop_person,
    crop_window,
    boxes_to_center_scale,
    estimate_focal_length,
    infer_cliff_encoder,
    load_cliff,
    make_bbox_info,
    translation_for_intrinsics,
    virtual_camera_matrix,
)

MANIFEST = Path(__file__).parent / "data" / "cliff_hr48_keys.txt"


def _manifest() -> dict:
    """name -> shape of the published CLIFF-HR48 checkpoint (names with 'module.')."""
    entries = {}
    for line in MANIFEST.read_text().splitlines():
        if line.strip():
            name, shape = line.split(" ", 1)
            entries[name] = tuple(int(v) for v in shape.strip("() \n").split(",") if v.strip())
    return entries


@pytest.fixture(scope="module")
def hr48():
    torch.manual_seed(0)
    return CLIFF("hr48").eval()


@pytest.fixture(scope="module")
def res50():
    torch.manual_seed(1)
    return CLIFF("res50").eval()


def _project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    return (points @ K.T)[:, :2] / points[:, 2:3]


# ---------------------------------------------------------------------------- layout


def test_hr48_state_dict_equals_published_checkpoint(hr48):
    expected = _manifest()
    built = {"module." + k: tuple(v.shape) for k, v in hr48.state_dict().items()}
    assert set(built) == set(expected), (sorted(set(built) - set(expected))[:5], sorted(set(expected) - set(built))[:5])
    wrong = {k: (built[k], expected[k]) for k in expected if built[k] != expected[k]}
    assert not wrong, list(wrong.items())[:5]
    assert list(built) == list(expected)  # same order too
    assert infer_cliff_encoder(expected) == "hr48"
    assert 75e6 < sum(p.numel() for p in hr48.parameters()) < 82e6


def test_res50_has_torchvision_names_and_cliff_regressor(res50):
    shapes = {k: tuple(v.shape) for k, v in res50.state_dict().items()}
    assert shapes["encoder.conv1.weight"] == (64, 3, 7, 7)
    assert shapes["encoder.bn1.running_var"] == (64,)
    assert shapes["encoder.layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert shapes["encoder.layer1.0.downsample.1.running_mean"] == (256,)
    assert shapes["encoder.layer3.5.conv2.weight"] == (256, 256, 3, 3)
    assert shapes["encoder.layer4.0.downsample.0.weight"] == (2048, 1024, 1, 1)
    assert shapes["encoder.layer4.2.conv3.weight"] == (2048, 512, 1, 1)
    assert "encoder.layer4.3.conv1.weight" not in shapes and not any(k.startswith("encoder.fc") for k in shapes)
    # torchvision resnet50 without its fc: 25,557,032 - 2,049,000 parameters
    assert sum(p.numel() for p in res50.encoder.parameters()) == 23_508_032
    regressor = {k[len("module."):]: v for k, v in _manifest().items() if not k.startswith("module.encoder.")}
    assert {k: v for k, v in shapes.items() if not k.startswith("encoder.")} == regressor
    assert infer_cliff_encoder(shapes) == "res50"


def test_published_layout_loads_back_strictly(res50, tmp_path):
    torch.manual_seed(2)
    source = CLIFF("res50").eval()
    with torch.no_grad():  # make buffers and BN statistics non-trivial so that they must load too
        source.init_pose.add_(0.05 * torch.randn_like(source.init_pose))
        source.init_cam.copy_(torch.tensor([[1.1, 0.05, 0.2]]))
        source.encoder.layer2[1].bn2.running_mean.normal_()
        source.deccam.weight.mul_(10.0)
    path = tmp_path / "res50-test_3dpw.pt"
    torch.save({"model": {"module." + k: v for k, v in source.state_dict().items()}}, path)
    loaded = load_cliff(path)
    assert loaded.encoder_name == "res50" and not loaded.training
    torch.manual_seed(3)
    crops, bbox_info = torch.randn(2, 3, 128, 96), torch.randn(2, 3)
    with torch.no_grad():
        for a, b in zip(source(crops, bbox_info), loaded(crops, bbox_info)):
            assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="res50"):
        load_cliff(path, encoder="hr48")


# ---------------------------------------------------------------------------- regressor


def test_rot6d_round_trip_through_regressor(res50):
    torch.manual_seed(4)
    rotations = axis_angle_to_matrix(torch.randn(24, 3))
    model = CLIFF("res50").eval()
    with torch.no_grad():
        model.init_pose.copy_(matrix_to_rot6d(rotations).reshape(1, 144))
        model.decpose.weight.zero_()
        model.decpose.bias.zero_()
        rotmats, betas, cam = model(torch.randn(2, 3, 64, 48), torch.zeros(2, 3))  # small crops: fast
    assert rotmats.shape == (2, 24, 3, 3) and betas.shape == (2, 10) and cam.shape == (2, 3)
    assert torch.allclose(rotmats, rotations.expand(2, -1, -1, -1), atol=1e-5)
    # interleaved layout: columns (x0, x2, x4) and (x1, x3, x5)
    assert torch.allclose(matrix_to_rot6d(rotations)[0, ::2], rotations[0, :, 0], rtol=0, atol=1e-7)


# ---------------------------------------------------------------------------- cameras


def _joints(smpl_body, pose_scale=0.1):
    """SMPL joints (24, 3) of an upright person facing the camera, body frame (no translation)."""
    torch.manual_seed(5)
    body_pose = pose_scale * torch.randn(1, 69)
    betas = 0.5 * torch.randn(1, 10)
    with torch.no_grad():
        out = smpl_body(global_orient=torch.tensor([[np.pi, 0.0, 0.0]]), body_pose=body_pose, betas=betas)
    return out.joints[0].double().numpy()


def test_bbox_info_and_cam_crop2full_formulas():
    W, H = 1280, 720
    f = estimate_focal_length(W, H)
    assert f == pytest.approx(np.hypot(W, H))
    info = make_bbox_info([[800.0, 300.0]], [400.0], (W, H), f)[0].numpy()
    np.testing.assert_allclose(info, [2.8 * 160 / f, 2.8 * -60 / f, (400 - 0.24 * f) / (0.06 * f)])
    t = cam_crop2full([[0.8, 0.1, -0.2]], [[800.0, 300.0]], [400.0], (W, H), f)[0].numpy()
    bs = 400 * 0.8
    np.testing.assert_allclose(t, [0.1 + 2 * 160 / bs, -0.2 + 2 * -60 / bs, 2 * f / bs])
    K = virtual_camera_matrix(W, H)
    assert K[0, 0] == K[1, 1] == pytest.approx(f) and K[0, 2] == W / 2 and K[1, 2] == H / 2
    # a degenerate (non-positive) scale still gives a finite translation in front of the camera
    assert np.all(np.isfinite(cam_crop2full([[-0.5, 0.0, 0.0]], [[800.0, 300.0]], [400.0], (W, H), f).numpy()))


def test_crop_camera_and_full_camera_agree(smpl_body):
    W, H = 1280, 720
    f = estimate_focal_length(W, H)
    K_virtual = virtual_camera_matrix(W, H)
    c_virtual = K_virtual[:2, 2]
    center, b = np.array([760.0, 330.0]), 420.0
    s, tx, ty = 0.9, 0.02, 0.25
    transl = cam_crop2full([[s, tx, ty]], [center], [b], (W, H), f)[0].numpy()

    def weak_perspective_in_image(points):
        """CLIFF's crop camera as cam_crop2full models the crop: ``256 / b`` crop pixels per image pixel
        about the box centre (the real crop window is this up to its rounding, < 1 image pixel)."""
        return center + b / CROP_HEIGHT * 0.5 * CROP_HEIGHT * s * (points[:, :2] + [tx, ty])

    for pose_scale, tolerance in ((0.0, 4.0), (0.1, 12.0)):
        joints = _joints(smpl_body, pose_scale)
        full = _project(joints + transl, K_virtual)
        weak = weak_perspective_in_image(joints)
        assert np.abs(full - weak).max() < tolerance  # a few px; only the joints' depth spread differs
        # exactly: perspective = weak perspective shrunk towards the image centre by tz / (tz + z)
        np.testing.assert_allclose(full - c_virtual, (weak - c_virtual) * transl[2] / (transl[2] + joints[:, 2:3]), atol=1e-6)
        # points at the body's depth 0 land on the same pixel
        flat = joints * [1, 1, 0]
        np.testing.assert_allclose(_project(flat + transl, K_virtual), weak_perspective_in_image(flat), atol=1e-6)


def test_real_intrinsics_keep_the_projection(smpl_body):
    W, H = 1280, 720
    f = estimate_focal_length(W, H)
    K_virtual = virtual_camera_matrix(W, H)
    joints = _joints(smpl_body)
    root = joints[0]
    near = np.array([[1440.0, 0.0, 648.0], [0.0, 1452.0, 355.0], [0.0, 0.0, 1.0]])  # close to the virtual camera
    wide = np.array([[1000.0, 0.0, 655.0], [0.0, 1004.0, 350.0], [0.0, 0.0, 1.0]])  # a wider lens
    for center, s in (([760.0, 330.0], 0.9), ([250.0, 420.0], 1.1), ([1100.0, 200.0], 0.7)):
        transl = cam_crop2full([[s, 0.01, 0.2]], [center], [420.0], (W, H), f)[0].numpy()
        virtual = _project(joints + transl, K_virtual)
        height_px = np.ptp(virtual[:, 1])
        same = translation_for_intrinsics(transl[None], f, (W, H), K_virtual, root_offset=root)[0].numpy()
        np.testing.assert_allclose(same, transl, atol=1e-9)
        for K, tolerance in ((near, 1.5), (wide, 0.03 * height_px)):
            transl_k = translation_for_intrinsics(transl[None], f, (W, H), K, root_offset=root)[0].numpy()
            real = _project(joints + transl_k, K)
            np.testing.assert_allclose(real[0], virtual[0], atol=1e-6)  # the pelvis stays on its pixel
            assert transl_k[2] + root[2] == pytest.approx((transl[2] + root[2]) * (K[0, 0] + K[1, 1]) / 2 / f)
            assert np.abs(real - virtual).max() < tolerance
            # without the pelvis offset the SMPL origin is kept instead: about as good
            transl_o = translation_for_intrinsics(transl[None], f, (W, H), K)[0].numpy()
            assert np.abs(_project(joints + transl_o, K) - virtual).max() < 1.2 * tolerance


def test_crop_puts_the_box_in_the_middle_at_cliff_scale():
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    x, y, w, h = 300, 100, 80, 240  # taller than 4:3, so the height sets the scale
    image[y:y + h, x:x + w] = 255
    (center,), (scale,) = boxes_to_center_scale([[x, y, w, h]])
    assert scale == pytest.approx(1.1 * h / 200)
    crop = crop_person(image, center, 200 * scale)
    assert crop.shape == (CROP_HEIGHT, CROP_WIDTH, 3) and crop.dtype == np.float32
    rows = np.flatnonzero(crop[:, CROP_WIDTH // 2, 0] > 127)
    cols = np.flatnonzero(crop[CROP_HEIGHT // 2, :, 0] > 127)
    assert len(rows) == pytest.approx(CROP_HEIGHT / 1.1, abs=2) and len(cols) == pytest.approx(w * CROP_HEIGHT / (1.1 * h), abs=2)
    assert rows.mean() == pytest.approx((CROP_HEIGHT - 1) / 2, abs=1)
    assert cols.mean() == pytest.approx((CROP_WIDTH - 1) / 2, abs=1)
    # a box near the border is padded with black
    (center,), (scale,) = boxes_to_center_scale([[0, 0, 60, 100]])
    corner = crop_person(np.full_like(image, 200), center, 200 * scale)
    assert corner[:5, :5].max() == 0 and corner[-5:, -5:].min() == 200


def _coordinate_image(height=240, width=250):
    """uint8 RGB image whose pixel (row y, column x) holds (x + 10, y + 10, 200): values name their source."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx + 10, yy + 10, np.full_like(xx, 200)], axis=-1).astype(np.uint8)


def test_crop_window_is_the_reference_integer_window():
    """CLIFF (imutils.crop) cuts the window round(c -/+ (0.75 b, b)/2) and resizes it edge to edge."""
    image = _coordinate_image()
    # box (x, y, w, h) = (100.3, 50.8, 40, 160): c = (120.3, 130.8), tall, so b = 1.1 * 160 = 176 and
    # the window is 132 x 176: x from round(54.3) = 54 to round(186.3) = 186, y from round(42.8) = 43 to round(218.8) = 219
    (center,), (scale,) = boxes_to_center_scale([[100.3, 50.8, 40.0, 160.0]])
    np.testing.assert_allclose(center, [120.3, 130.8], atol=1e-12)
    assert 200 * scale == pytest.approx(176.0, abs=1e-9)
    assert crop_window(center, 200 * scale).tolist() == [54, 43, 186, 219]
    crop = crop_person(image, center, 200 * scale)
    # the window is upsampled (132 -> 192, 176 -> 256): the crop's corners are exactly its corner pixels
    np.testing.assert_array_equal(crop[0, 0], [54 + 10, 43 + 10, 200])
    np.testing.assert_array_equal(crop[-1, -1], [185 + 10, 218 + 10, 200])
    np.testing.assert_array_equal(crop[0, -1], [185 + 10, 43 + 10, 200])
    # inside, crop pixel u samples x = 54 + (u + 0.5) * 132 / 192 - 0.5 (bilinear is exact on a linear ramp)
    u = np.arange(2, CROP_WIDTH - 2)
    np.testing.assert_allclose(crop[100, u, 0], 54 + (u + 0.5) * 132 / 192 - 0.5 + 10, atol=1e-3)
    v = np.arange(2, CROP_HEIGHT - 2)
    np.testing.assert_allclose(crop[v, 100, 1], 43 + (v + 0.5) * 176 / 256 - 0.5 + 10, atol=1e-3)
    # so the box centre c is not the crop centre: the crop centre (95.5, 127.5) samples (119.5, 130.5)
    np.testing.assert_allclose(crop[127:129, 95:97, :2].mean(axis=(0, 1)) - 10, [119.5, 130.5], atol=1e-3)
    M = crop_matrix(center, 200 * scale)  # the same map as an affine image -> crop
    np.testing.assert_allclose(M @ [54 + 0.5 * 132 / 192 - 0.5, 43 + 0.5 * 176 / 256 - 0.5, 1.0], [0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(M @ [119.5, 130.5, 1.0], [95.5, 127.5], atol=1e-9)
    # an exact half rounds to even, as numpy's round in the reference: box (10, 10, 10, 5) has
    # c = (15, 12.5), b = 1.1 * 10 * 256/192 = 14.67, window x from round(9.5) = 10 to round(20.5) = 20
    (center,), (scale,) = boxes_to_center_scale([[10.0, 10.0, 10.0, 5.0]])
    assert crop_window(center, 200 * scale).tolist() == [10, 5, 20, 20]


def test_crop_window_outside_the_image_is_zero_padded():
    image = _coordinate_image()
    # box (2, 3, 50, 100): c = (27, 53), b = 110, window 82.5 x 110 ->
    # x from round(-14.25) = -14 to round(68.25) = 68, y from round(-2) = -2 to round(108) = 108
    (center,), (scale,) = boxes_to_center_scale([[2.0, 3.0, 50.0, 100.0]])
    assert crop_window(center, 200 * scale).tolist() == [-14, -2, 68, 108]
    crop = crop_person(image, center, 200 * scale)
    np.testing.assert_array_equal(crop[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(crop[-1, -1], [67 + 10, 107 + 10, 200])
    # crop column u samples window column (u + 0.5) * 82 / 192 - 0.5; window columns 0..13 are x = -14..-1 (padding)
    window_x = (np.arange(CROP_WIDTH) + 0.5) * 82 / 192 - 0.5
    window_y = (np.arange(CROP_HEIGHT) + 0.5) * 110 / 256 - 0.5
    assert np.all(crop[:, window_x <= 13, 2] == 0)  # padding columns
    assert np.all(crop[window_y <= 1, :, 2] == 0)  # padding rows (window rows 0, 1 are y = -2, -1)
    assert np.all(crop[np.ix_(window_y >= 2, window_x >= 14)][..., 2] == 200)  # fully inside the image
    # between the last padded and the first image column the crop blends 0 and the image linearly
    blend = (window_x > 13) & (window_x < 14)
    assert blend.any()
    np.testing.assert_allclose(crop[200, blend, 2], 200 * (window_x[blend] - 13), atol=1e-3)


# ---------------------------------------------------------------------------- estimator


def _synthetic_image(height=480, width=640):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    image[100:400, 200:300] = (200, 150, 120)  # a "person"
    image[60:300, 450:520] = (90, 160, 220)
    return image


def test_estimator_end_to_end_random_weights(hr48, res50, smpl_body):
    image = _synthetic_image()
    height, width = image.shape[:2]
    boxes = np.array([[190, 90, 120, 320], [440, 50, 90, 260], [600, 400, 100, 120]], dtype=float)  # last one partly outside
    K = np.array([[520.0, 0.0, 322.0], [0.0, 522.0, 236.0], [0.0, 0.0, 1.0]])
    estimator = CliffEstimator(hr48, device="cpu", body=smpl_body)
    prediction = estimator.estimate(image, boxes, K=K)
    assert prediction.rotmats.shape == (3, 24, 3, 3) and prediction.transl.shape == (3, 3)
    for value in (prediction.rotmats, prediction.betas, prediction.cam_crop, prediction.transl):
        assert np.all(np.isfinite(value))
    assert np.all(prediction.transl[:, 2] > 0)
    with torch.no_grad():
        pelvis = smpl_body(betas=torch.as_tensor(prediction.betas, dtype=torch.float32)).joints[:, 0].double()
    f = estimate_focal_length(width, height)
    expected = translation_for_intrinsics(prediction.transl_virtual, f, (width, height), K, root_offset=pelvis).numpy()
    np.testing.assert_allclose(prediction.transl, expected, rtol=1e-6, atol=1e-6)
    results = prediction.to_smpl_params()
    assert len(results) == 3
    for params, rotmats in zip(results, prediction.rotmats):
        pose = np.concatenate([params.global_orient, params.body_pose]).reshape(24, 3)
        np.testing.assert_allclose(axis_angle_to_matrix(torch.as_tensor(pose)).numpy(), rotmats, atol=1e-6)

    plain = CliffEstimator(res50)(image, boxes)  # no K: translation in the virtual camera
    assert len(plain) == 3
    chunked = CliffEstimator(res50, batch_size=2)(image, boxes)  # two batches: 2 + 1 crops
    for a, b in zip(plain, chunked):
        np.testing.assert_allclose(a.transl, b.transl, rtol=1e-4, atol=1e-5)  # metres; x and y can be near 0
        np.testing.assert_allclose(a.body_pose, b.body_pose, atol=1e-4)
    for params in plain:
        for value in (params.global_orient, params.body_pose, params.betas, params.transl):
            assert np.all(np.isfinite(value))
        assert params.transl[2] > 0
    assert CliffEstimator(res50)(image, np.zeros((0, 4))) == []


# ---------------------------------------------------------------------------- bad input


def test_missing_checkpoint_names_release_and_config_key(tmp_path):
    with pytest.raises(CheckpointError) as error:
        load_cliff(tmp_path / "hr48-PA43.0_MJE69.0_MVE81.2_3dpw.pt")
    message = str(error.value)
    assert "haofanwang/CLIFF" in message and "cliff_checkpoint" in message


def test_other_networks_checkpoints_are_refused(tmp_path):
    vitpose = tmp_path / "td-hm_ViTPose-base.pth"
    torch.save(
        {
            "meta": {"epoch": 210},
            "state_dict": {
                "backbone.patch_embed.projection.weight": torch.zeros(768, 3, 16, 16),
                "head.final_layer.weight": torch.zeros(17, 256, 1, 1),
            },
        },
        vitpose,
    )
    with pytest.raises(CheckpointError, match="not a CLIFF|mmpose"):
        load_cliff(vitpose)
    renamed = tmp_path / "vitpose_as_model.pt"
    torch.save({"model": {"backbone.patch_embed.projection.weight": torch.zeros(768, 3, 16, 16)}}, renamed)
    with pytest.raises(CheckpointError, match="does not hold CLIFF weights"):
        load_cliff(renamed)
    truncated = tmp_path / "truncated.pt"
    torch.save({"model": {"module.encoder.layer4.0.conv1.weight": torch.zeros(512, 1024, 1, 1),
                          "module.fc1.weight": torch.zeros(1024, 2208)}}, truncated)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_cliff(truncated)
    reshaped = tmp_path / "reshaped.pt"
    torch.save({"model": {"module.encoder.layer4.0.conv1.weight": torch.zeros(512, 1024, 1, 1),
                          "module.fc1.weight": torch.zeros(1024, 2000)}}, reshaped)
    with pytest.raises(CheckpointError, match=r"fc1.weight: file \(1024, 2000\) vs network \(1024, 2208\)"):
        load_cliff(reshaped)


def test_bad_images_and_boxes(res50):
    estimator = CliffEstimator(res50)
    image = _synthetic_image()
    with pytest.raises(ValueError, match="grayscale"):
        estimator(image[:, :, 0], [[10, 10, 50, 100]])
    with pytest.raises(ValueError, match="uint8"):
        estimator(image.astype(np.float32), [[10, 10, 50, 100]])
    with pytest.raises(ValueError, match="box 1 .*zero or negative area"):
        estimator(image, [[10, 10, 50, 100], [20, 20, 0, 50]])
    with pytest.raises(ValueError, match="box 2 .*outside"):
        estimator(image, [[10, 10, 50, 100], [20, 20, 30, 50], [700, 10, 40, 80]])
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        estimator(image, [[10, 10, 50]])
    with pytest.raises(ValueError, match="3x3"):
        estimator(image, [[10, 10, 50, 100]], K=np.eye(2))
