"""ViTPose in plain PyTorch: checkpoint names/layouts, crop geometry, flip test, DARK-UDP decode, input checks.

Random weights only (no published file is needed): real heatmaps are replaced by synthetic
Gaussian peaks through a stand-in network where the decode is under test.
"""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from smplify3d_core.image import to_rgb8
from smplify3d_core.perception.checkpoints import CheckpointError
from smplify3d_core.perception.pose2d import (
    COCO17_FLIP_INDICES,
    KeypointEstimator,
    box_center_scale,
    crop_inputs,
    decode_heatmaps,
    udp_warp_matrix,
)
from smplify3d_core.perception.vitpose import (
    VITPOSE_VARIANTS,
    build_vitpose,
    infer_vitpose_variant,
    load_vitpose,
    vitpose_state_dict_from_checkpoint,
)

MANIFEST = Path(__file__).parent / "data" / "vitpose_b_mmpose_keys.txt"
HM_H, HM_W = 64, 48


# ------------------------------------------------------------------------------------------
# fixtures and helpers
# ------------------------------------------------------------------------------------------
def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial weights everywhere, BatchNorm statistics included."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.dtype.is_floating_point:
                values = torch.randn(tensor.shape, generator=gen) * 0.05
                if name.endswith("running_var") or (("ln" in name or "deconv_layers.1" in name
                                                     or "deconv_layers.4" in name) and name.endswith("weight")
                                                    and tensor.ndim == 1):
                    values = 1.0 + values.abs()
                tensor.copy_(values)
            else:
                tensor.fill_(7)
    return model.eval()


#: An official-repository pos_embed (1, 193, C) with its cls slot; vit_b uses its merged form.
POS193 = torch.randn(1, 193, 768, generator=torch.Generator().manual_seed(5)) * 0.02


@pytest.fixture(scope="module")
def vit_b():
    model = _randomize(build_vitpose("b"))
    with torch.no_grad():
        model.backbone.pos_embed.copy_(POS193[:, 1:] + POS193[:, :1])
    return model


@pytest.fixture(scope="module")
def probe():
    """A fixed normalised input (1, 3, 256, 192)."""
    return torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def reference_output(vit_b, probe):
    with torch.no_grad():
        return vit_b(probe)


def _official_names(state: dict) -> dict:
    """mmpose 1.x names -> official ViTPose-repository names (the inverse renaming, written out)."""
    out = {}
    for name, tensor in state.items():
        if name.startswith("head."):
            name = "keypoint_head." + name[len("head."):]
        name = name.replace("backbone.patch_embed.projection.", "backbone.patch_embed.proj.")
        name = name.replace("backbone.ln1.", "backbone.last_norm.")
        if name.startswith("backbone.layers."):
            name = name.replace("backbone.layers.", "backbone.blocks.")
            name = name.replace(".ln1.", ".norm1.").replace(".ln2.", ".norm2.")
            name = name.replace(".ffn.layers.0.0.", ".mlp.fc1.").replace(".ffn.layers.1.", ".mlp.fc2.")
        out[name] = tensor.clone()
    return out


def _gaussian_maps(points_xy: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Heatmaps (..., 64, 48) with one unit Gaussian each, centred at points (..., 2) in heatmap pixels."""
    yy, xx = np.mgrid[0:HM_H, 0:HM_W].astype(np.float64)
    dx = xx - points_xy[..., 0, None, None]
    dy = yy - points_xy[..., 1, None, None]
    return np.exp(-(dx ** 2 + dy ** 2) / (2 * sigma ** 2)).astype(np.float32)


def _reference_decode(heatmaps, centers, scales):
    """Per-keypoint loop version of the mmpose DARK-UDP decode (checks the vectorised one)."""
    n, k = heatmaps.shape[:2]
    out = np.zeros((n, k, 3))
    for i in range(n):
        for j in range(k):
            hm = heatmaps[i, j].astype(np.float32)
            y, x = np.unravel_index(np.argmax(hm), hm.shape)
            padded = np.zeros((HM_H + 10, HM_W + 10), np.float32)
            padded[5:-5, 5:-5] = hm
            blurred = cv2.GaussianBlur(padded, (11, 11), 0)[5:-5, 5:-5]
            blurred *= hm.max() / blurred.max()
            lg = np.pad(np.log(np.clip(blurred, 1e-3, 50)).astype(np.float64), 1, mode="edge")
            f = lambda dx, dy: lg[y + 1 + dy, x + 1 + dx]  # noqa: E731
            grad = np.array([0.5 * (f(1, 0) - f(-1, 0)), 0.5 * (f(0, 1) - f(0, -1))])
            dxx = f(1, 0) - 2 * f(0, 0) + f(-1, 0)
            dyy = f(0, 1) - 2 * f(0, 0) + f(0, -1)
            dxy = 0.5 * (f(1, 1) - f(1, 0) - f(0, 1) + 2 * f(0, 0) - f(-1, 0) - f(0, -1) + f(-1, -1))
            hess = np.array([[dxx, dxy], [dxy, dyy]]) + np.finfo(np.float32).eps * np.eye(2)
            p = np.array([x, y], float) - np.linalg.solve(hess, grad)
            out[i, j, :2] = centers[i] + scales[i] * (p / [HM_W - 1, HM_H - 1] - 0.5)
            out[i, j, 2] = hm.max()
    return out


# Body-like keypoint offsets in heatmap pixels: left/right pairs mirrored in x (flip-consistent).
_HALF = np.array([[0, -20], [2, -22], [2, -22], [5, -20], [5, -20], [8, -12], [8, -12], [11, -2], [11, -2],
                  [12, 7], [12, 7], [5, 6], [5, 6], [6, 16], [6, 16], [6, 25], [6, 25]], dtype=np.float64)
_SIGN = np.array([0, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1], dtype=np.float64)
BODY_OFFSETS = np.stack([_HALF[:, 0] * _SIGN * 0.8, _HALF[:, 1]], axis=1)


class DotTracker(torch.nn.Module):
    """Stand-in network: finds the bright dot in each normalised crop (intensity centroid) and returns
    sigma-2 Gaussian heatmaps at dot + BODY_OFFSETS (heatmap pixels, UDP: p = u * 47 / 191)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, images):
        self.calls.append(tuple(images.shape))
        weight = (images[:, 0] * 58.395 + 123.675).clamp(min=0).double()  # back to 0..255 red channel
        weight = torch.where(weight > 40, weight, torch.zeros_like(weight))
        vv, uu = torch.meshgrid(torch.arange(256.0, dtype=torch.float64), torch.arange(192.0, dtype=torch.float64),
                                indexing="ij")
        total = weight.sum(dim=(1, 2)).clamp(min=1e-9)
        u = (weight * uu).sum(dim=(1, 2)) / total
        v = (weight * vv).sum(dim=(1, 2)) / total
        dot = torch.stack([u * 47 / 191, v * 63 / 255], dim=1).numpy()
        points = dot[:, None, :] + BODY_OFFSETS[None]
        return torch.from_numpy(_gaussian_maps(points))


def _dot_image(dot_xy, size_hw=(480, 640)):
    """Dark image with a Gaussian red dot (sigma 2.5 px) at a sub-pixel image location."""
    yy, xx = np.mgrid[0:size_hw[0], 0:size_hw[1]]
    blob = np.exp(-((xx - dot_xy[0]) ** 2 + (yy - dot_xy[1]) ** 2) / (2 * 2.5 ** 2))
    image = np.zeros(size_hw + (3,), np.uint8)
    image[..., 0] = np.round(255 * blob).astype(np.uint8)
    image[..., 1] = 30
    return image


# ------------------------------------------------------------------------------------------
# network names and shapes
# ------------------------------------------------------------------------------------------
def test_vitpose_b_matches_mmpose_manifest():
    expected = []
    for line in MANIFEST.read_text().splitlines():
        name, rest = line.split(" ", 1)
        shape, dtype = rest.rsplit(" ", 1)
        expected.append((name, shape, dtype))
    model = build_vitpose("b")
    got = [(k, str(tuple(v.shape)), str(v.dtype)) for k, v in model.state_dict().items()]
    assert got == expected  # same names, shapes, dtypes and order
    assert len(expected) == 163


@pytest.mark.parametrize("variant,width,depth,heads", [("l", 1024, 24, 16), ("h", 1280, 32, 16), ("s", 384, 12, 12)])
def test_larger_variants_widths_and_depths(variant, width, depth, heads):
    with torch.device("meta"):  # names and shapes only, no memory
        model = build_vitpose(variant)
    state = model.state_dict()
    with torch.device("meta"):
        b_names = {k for k in build_vitpose("b").state_dict() if not k.startswith("backbone.layers.")}
    assert {k for k in state if not k.startswith("backbone.layers.")} == b_names
    assert state["backbone.pos_embed"].shape == (1, 192, width)
    assert state["backbone.layers.0.attn.qkv.weight"].shape == (3 * width, width)
    assert state["backbone.layers.0.ffn.layers.0.0.weight"].shape == (4 * width, width)
    assert state["head.deconv_layers.0.weight"].shape == (width, 256, 4, 4)
    assert len({k.split(".")[2] for k in state if k.startswith("backbone.layers.")}) == depth
    assert model.backbone.layers[0].attn.num_heads == heads == VITPOSE_VARIANTS[variant].num_heads
    assert infer_vitpose_variant(state) == variant


def test_forward_shape(reference_output):
    assert reference_output.shape == (1, 17, 64, 48)
    assert torch.isfinite(reference_output).all()


# ------------------------------------------------------------------------------------------
# checkpoint files
# ------------------------------------------------------------------------------------------
def test_mmpose_layout_file_loads_strictly(tmp_path, vit_b, probe, reference_output):
    meta = {"epoch": 210, "iter": np.int64(12345), "mmpose_version": "1.0.0",
            "dataset_meta": {"flip_indices": np.array(COCO17_FLIP_INDICES), "sigmas": np.linspace(0.025, 0.1, 17),
                             "best": np.float64(0.757), "ok": np.bool_(True)}}
    path = tmp_path / "td-hm_ViTPose-base.pth"
    torch.save({"meta": meta, "state_dict": vit_b.state_dict()}, path)
    loaded = load_vitpose(path)
    assert loaded.variant == "b" and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(probe), reference_output)
    with pytest.raises(CheckpointError, match="ViTPose-B but variant 'l'"):
        load_vitpose(path, variant="l")


def test_official_layout_file_converts(tmp_path, vit_b, probe, reference_output):
    official = _official_names(vit_b.state_dict())
    assert "backbone.blocks.3.mlp.fc1.weight" in official and "keypoint_head.final_layer.bias" in official
    official["backbone.pos_embed"] = POS193.clone()  # official: cls slot added to every patch
    path = tmp_path / "vitpose-b.pth"
    torch.save({"state_dict": official, "meta": {"epoch": 210}}, path)

    loaded = load_vitpose(path)
    assert loaded.variant == "b" and not loaded.training
    assert set(loaded.state_dict()) == set(vit_b.state_dict())
    with torch.no_grad():
        assert torch.equal(loaded(probe), reference_output)


def test_mmpose_cls_token_slot_is_dropped():
    with torch.device("meta"):
        state = build_vitpose("b").state_dict()
    pos193 = torch.randn(1, 193, 768)
    state["backbone.pos_embed"] = pos193
    state["data_preprocessor.mean"] = torch.zeros(3, 1, 1)
    converted = vitpose_state_dict_from_checkpoint({"meta": {}, "state_dict": state})
    assert torch.equal(converted["backbone.pos_embed"], pos193[:, 1:])
    assert set(converted) == set(state) - {"data_preprocessor.mean"}


def test_missing_checkpoint_names_model_zoo_and_config_key(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_vitpose(tmp_path / "nope.pth")
    message = str(info.value)
    assert "mmpose model zoo" in message and "vitpose_checkpoint" in message


def test_wrong_file_is_rejected_clearly(tmp_path):
    cliff_like = {"model": {"module.encoder.conv1.weight": torch.zeros(64, 3, 3, 3),
                            "module.fc1.weight": torch.zeros(1024, 2218), "module.init_pose": torch.zeros(1, 144)}}
    path = tmp_path / "hr48-PA43.0_MJE69.0_MVE81.2_3dpw.pt"
    torch.save(cliff_like, path)
    with pytest.raises(CheckpointError, match="not a ViTPose checkpoint") as info:
        load_vitpose(path)
    assert "vitpose_checkpoint" in str(info.value)

    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(64, 3, 7, 7)}}, path)
    with pytest.raises(CheckpointError, match="not a ViTPose checkpoint"):
        load_vitpose(path)

    path.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="could not read"):
        load_vitpose(path)


def test_incomplete_checkpoint_reports_missing_keys(tmp_path, vit_b):
    state = dict(vit_b.state_dict())
    del state["head.final_layer.bias"]
    path = tmp_path / "partial.pth"
    torch.save({"meta": {}, "state_dict": state}, path)
    with pytest.raises(CheckpointError, match="head.final_layer.bias"):
        load_vitpose(path)


# ------------------------------------------------------------------------------------------
# geometry and decode
# ------------------------------------------------------------------------------------------
def test_box_center_scale_fixes_aspect():
    centers, scales = box_center_scale(np.array([[10.0, 20.0, 100.0, 200.0], [0.0, 0.0, 300.0, 100.0]]))
    np.testing.assert_allclose(centers, [[60, 120], [150, 50]])
    np.testing.assert_allclose(scales[0], [0.75 * 250, 250])  # tall: width enlarged
    np.testing.assert_allclose(scales[1], [375, 375 / 0.75])  # wide: height enlarged


def test_udp_affine_maps_box_corners_and_centre():
    center, scale = np.array([321.3, 207.9]), np.array([150.0, 200.0])
    warp = udp_warp_matrix(center, scale)
    apply = lambda p: warp[:, :2] @ np.asarray(p, float) + warp[:, 2]  # noqa: E731
    np.testing.assert_allclose(apply(center - scale / 2), [0, 0], atol=1e-9)
    np.testing.assert_allclose(apply(center + scale / 2), [191, 255], atol=1e-9)
    np.testing.assert_allclose(apply(center), [95.5, 127.5], atol=1e-9)
    x, y = 300.0, 250.0
    np.testing.assert_allclose(apply([x, y]), [191 / 150 * (x - center[0] + 75), 255 / 200 * (y - center[1] + 100)],
                               atol=1e-9)
    # the crop really samples there: with a unit-scale crop one bright pixel lands on one input pixel
    image = np.zeros((400, 600, 3), np.uint8)
    image[200, 300] = 255  # u = x - 300.5 + 95.5 = 95, v = y - 200.5 + 127.5 = 127
    crop = crop_inputs(image, np.array([[300.5, 200.5]]), np.array([[191.0, 255.0]]))[0]
    assert crop.shape == (256, 192, 3)
    assert [tuple(p) for p in np.argwhere(crop[..., 0] > 0)] == [(127, 95)] and crop[127, 95, 0] == 255


def test_decode_recovers_subpixel_peaks():
    rng = np.random.default_rng(3)
    n = 3
    points = np.stack([rng.uniform(7, 40, (n, 17)), rng.uniform(7, 56, (n, 17))], axis=-1)
    heatmaps = _gaussian_maps(points)
    boxes = np.array([[50.0, 40.0, 120.0, 260.0], [300.5, 100.2, 90.0, 180.0], [10.0, 10.0, 400.0, 300.0]])
    centers, scales = box_center_scale(boxes)
    decoded = decode_heatmaps(heatmaps, centers, scales)
    truth = centers[:, None] + scales[:, None] * (points / [47, 63] - 0.5)
    assert decoded.shape == (n, 17, 3) and decoded.dtype == np.float32
    assert np.abs(decoded[..., :2] - truth).max() < 0.1  # image pixels
    np.testing.assert_allclose(decoded[..., 2], heatmaps.reshape(n, 17, -1).max(-1))
    np.testing.assert_allclose(decoded, _reference_decode(heatmaps, centers, scales), atol=2e-3)
    # a flat or non-positive map decodes to finite numbers
    flat = np.zeros((1, 17, 64, 48), np.float32) - 0.5
    assert np.isfinite(decode_heatmaps(flat, centers[:1], scales[:1])).all()


def test_decode_many_persons_at_once_like_one_at_a_time():
    """40 persons (680 maps: more channels than one OpenCV filter call takes) decode as each alone."""
    rng = np.random.default_rng(5)
    n = 40
    points = np.stack([rng.uniform(7, 40, (n, 17)), rng.uniform(7, 56, (n, 17))], axis=-1)
    heatmaps = _gaussian_maps(points) * rng.uniform(0.3, 1.0, (n, 17, 1, 1)).astype(np.float32)
    centers, scales = box_center_scale(np.column_stack([rng.uniform(0, 500, (n, 2)), rng.uniform(60, 300, (n, 2))]))
    together = decode_heatmaps(heatmaps, centers, scales)
    alone = np.concatenate([decode_heatmaps(heatmaps[i:i + 1], centers[i:i + 1], scales[i:i + 1]) for i in range(n)])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-4)
    np.testing.assert_allclose(together, _reference_decode(heatmaps, centers, scales), atol=2e-3)


def test_dark_blur_is_opencvs_gaussian_on_a_zero_border():
    from smplify3d_core.perception.pose2d import _blur_like_dark

    rng = np.random.default_rng(6)
    maps = (rng.random((3, HM_H, HM_W)) ** 6).astype(np.float32)
    blurred = _blur_like_dark(maps, 11)
    for m, out in zip(maps, blurred):
        reference = cv2.GaussianBlur(cv2.copyMakeBorder(m, 5, 5, 5, 5, cv2.BORDER_CONSTANT, value=0), (11, 11), 0)[5:-5, 5:-5]
        reference *= m.max() / reference.max()  # DARK keeps each map's maximum
        np.testing.assert_allclose(out, reference, rtol=0, atol=1e-6)


def test_decode_non_positive_maps_like_mmpose():
    """mmpose's get_heatmap_maximum: a map with maximum <= 0 has location (-1, -1) and score = the maximum."""
    rng = np.random.default_rng(4)
    points = np.stack([rng.uniform(7, 40, (2, 17)), rng.uniform(7, 56, (2, 17))], axis=-1)
    heatmaps = _gaussian_maps(points)
    centers, scales = box_center_scale(np.array([[50.0, 40.0, 120.0, 260.0], [300.5, 100.2, 90.0, 180.0]]))
    reference = _reference_decode(heatmaps, centers, scales)  # before emptying some maps
    empty = {(0, 0): -0.2, (0, 5): 0.0, (1, 16): -1e-4}  # (person, keypoint): the map's maximum
    for (i, j), peak in empty.items():
        heatmaps[i, j] = peak - 0.3 * _gaussian_maps(points[i, j][None])[0]  # a dip below the maximum
    decoded = decode_heatmaps(heatmaps, centers, scales)
    assert np.isfinite(decoded).all()
    for (i, j), peak in empty.items():
        corner = centers[i] + scales[i] * (np.array([-1.0, -1.0]) / [HM_W - 1, HM_H - 1] - 0.5)
        np.testing.assert_allclose(decoded[i, j, :2], corner, atol=1e-3)  # image pixels
        assert decoded[i, j, 2] == pytest.approx(peak, abs=1e-7)
    # the other maps decode as before (the refinement of one map never reads another)
    mask = np.ones((2, 17), bool)
    mask[tuple(np.array(list(empty)).T)] = False
    np.testing.assert_allclose(decoded[mask], reference[mask], atol=2e-3)


@pytest.mark.parametrize("flip_test", [False, True])
def test_estimator_end_to_end_geometry(flip_test):
    """Dot at a known image location -> crop -> (stand-in) heatmaps -> flip test -> decode -> the dot."""
    dot = np.array([312.37, 228.81])
    image = _dot_image(dot)
    boxes = np.array([[262.0, 120.0, 90.0, 210.0], [240.3, 150.7, 140.0, 150.0]])
    model = DotTracker()
    estimator = KeypointEstimator(model, "cpu", flip_test=flip_test, batch_size=1 if flip_test else 32)
    keypoints = estimator(image, boxes)
    assert keypoints.shape == (2, 17, 3)
    assert model.calls == ([(2, 3, 256, 192)] * 2 if flip_test else [(2, 3, 256, 192)])  # batches (flip doubles)
    centers, scales = box_center_scale(boxes)
    expected = dot[None, None] + BODY_OFFSETS[None] * scales[:, None] / [47, 63]
    assert np.abs(keypoints[..., :2] - expected).max() < 0.1
    assert (keypoints[..., 2] > 0.9).all()


def test_flip_test_without_channel_swap_would_be_wrong():
    """The stand-in's mirrored output really depends on the swap (guards the test above)."""
    model = DotTracker()
    image = _dot_image(np.array([312.37, 228.81]))
    centers, scales = box_center_scale(np.array([[262.0, 120.0, 90.0, 210.0]]))
    crop = crop_inputs(image, centers, scales)
    x = torch.from_numpy(crop).permute(0, 3, 1, 2).float()
    x = (x - torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)) / torch.tensor([58.395, 57.12, 57.375]).view(
        1, 3, 1, 1)
    plain, mirrored = model(x), model(x.flip(-1))
    assert torch.allclose(mirrored.flip(-1)[:, list(COCO17_FLIP_INDICES)], plain, atol=1e-3)
    assert not torch.allclose(mirrored.flip(-1), plain, atol=1e-2)


def test_estimator_with_random_vitpose_b(vit_b):
    rng = np.random.default_rng(0)
    image = np.full((480, 640, 3), 110, np.uint8)
    image += rng.integers(0, 20, image.shape, dtype=np.uint8)
    cv2.ellipse(image, (200, 260), (40, 120), 0, 0, 360, (200, 80, 60), -1)
    cv2.circle(image, (200, 120), 25, (220, 180, 160), -1)
    boxes = np.array([[150.0, 90.0, 100.0, 300.0], [600.0, 300.0, 80.0, 220.0]])  # the 2nd partly outside
    keypoints = KeypointEstimator(vit_b, "cpu", flip_test=False)(image, boxes)
    assert keypoints.shape == (2, 17, 3) and keypoints.dtype == np.float32
    assert np.isfinite(keypoints).all()
    empty = KeypointEstimator(vit_b, "cpu")(image, np.zeros((0, 4)))
    assert empty.shape == (0, 17, 3)


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------
def test_bad_boxes_raise_with_index():
    estimator = KeypointEstimator(DotTracker(), "cpu")
    image = _dot_image(np.array([100.0, 100.0]))
    with pytest.raises(ValueError, match="box 1 .*outside"):
        estimator(image, np.array([[10.0, 10.0, 50.0, 80.0], [700.0, 10.0, 50.0, 80.0]]))
    with pytest.raises(ValueError, match="box 0 .*zero or negative"):
        estimator(image, np.array([[10.0, 10.0, 0.0, 80.0]]))
    with pytest.raises(ValueError, match="box 0 .*non-finite"):
        estimator(image, np.array([[np.nan, 10.0, 5.0, 80.0]]))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        estimator(image, np.array([10.0, 10.0, 5.0, 80.0]))


def test_bad_boxes_skip_policy_gives_score_zero():
    model = DotTracker()
    estimator = KeypointEstimator(model, "cpu", flip_test=False, on_invalid_box="skip")
    image = _dot_image(np.array([100.0, 100.0]))
    boxes = np.array([[-300.0, 10.0, 100.0, 100.0], [60.0, 40.0, 80.0, 120.0], [10.0, 10.0, 20.0, -1.0]])
    keypoints = estimator(image, boxes)
    assert model.calls == [(1, 3, 256, 192)]  # only the valid box ran
    assert (keypoints[[0, 2]] == 0).all()
    assert (keypoints[1, :, 2] > 0.9).all()


def test_image_checks_and_conversion():
    estimator = KeypointEstimator(DotTracker(), "cpu")
    box = np.array([[10.0, 10.0, 50.0, 80.0]])
    with pytest.raises(ValueError, match="grayscale.*mono8"):
        estimator(np.zeros((120, 160), np.uint8), box)
    with pytest.raises(ValueError, match="16-bit.*mono16"):
        estimator(np.zeros((120, 160), np.uint16), box)
    with pytest.raises(ValueError, match="16-bit"):
        estimator(np.zeros((120, 160, 3), np.uint16), box)
    with pytest.raises(ValueError, match="rgba8"):
        estimator(np.zeros((120, 160, 4), np.uint8), box)
    with pytest.raises(ValueError, match="uint8"):
        estimator(np.zeros((120, 160, 3), np.float32), box)

    rgb = np.random.default_rng(0).integers(0, 255, (4, 5, 3), dtype=np.uint8)
    assert np.array_equal(to_rgb8(rgb, "rgb8"), rgb)
    assert np.array_equal(to_rgb8(rgb[..., ::-1], "bgr8"), rgb)
    rgba = np.concatenate([rgb, np.full((4, 5, 1), 9, np.uint8)], axis=2)
    assert np.array_equal(to_rgb8(rgba, "rgba8"), rgb)
    assert np.array_equal(to_rgb8(np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]), "BGRA8"), rgb)
    mono = rgb[..., 0]
    assert np.array_equal(to_rgb8(mono, "mono8"), np.repeat(mono[..., None], 3, axis=2))
    sixteen = np.array([[1000, 2000], [3000, 1000]], np.uint16)
    for encoding in ("mono16", "16UC1"):
        converted = to_rgb8(sixteen, encoding)
        assert converted.dtype == np.uint8 and converted.shape == (2, 2, 3)
        assert converted[0, 0, 0] == 0 and converted[1, 0, 0] == 255 and converted[0, 1, 0] == 128
    with pytest.raises(ValueError, match="needs dtype uint16"):
        to_rgb8(mono, "mono16")
    with pytest.raises(ValueError, match="unsupported image encoding"):
        to_rgb8(rgb, "yuv422")


def test_half_on_cpu_warns_and_runs_float32():
    with pytest.warns(UserWarning, match="half precision"):
        estimator = KeypointEstimator(DotTracker(), "cpu", half=True)
    assert estimator.half is False
