"""CLIFF: an initial SMPL estimate per person from an image crop and its place in the image.

Plain-PyTorch re-implementation of CLIFF (Li et al., ECCV 2022; https://github.com/haofanwang/CLIFF)
whose parameter names equal the published checkpoints (``hr48-PA43.0_MJE69.0_MVE81.2_3dpw.pt``,
``res50-PA45.7_MJE72.0_MVE85.3_3dpw.pt``: ``{'model': state_dict}`` with a ``module.`` prefix), so
they load with ``strict=True`` (:func:`load_cliff`).

Pipeline for one person box (x, y, w, h) in an image of W x H pixels:

1. centre ``c = (x + w/2, y + h/2)``, ``scale = 1.1 * max(w * 256/192, h) / 200`` and the crop
   height in image pixels ``b = 200 * scale``; the crop is the integer pixel window
   ``round(c - (0.75 b, b)/2) .. round(c + (0.75 b, b)/2)`` (end excluded, zero outside the image)
   resized (``cv2.resize``, bilinear) to 192 x 256 (W x H), exactly as CLIFF's ``common/imutils.py``
   ``crop`` does (:func:`crop_window`, :func:`crop_person`): about ``256 / b`` crop pixels per image
   pixel, and the crop centre lands on about ``c - 0.5`` image pixels (the window's rounding and
   pixel-edge resize), not on c;
2. RGB / 255, ImageNet mean/std normalisation, (3, 256, 192);
3. ``bbox_info = [2.8 (c_x - W/2) / f, 2.8 (c_y - H/2) / f, (b - 0.24 f) / (0.06 f)]`` with the
   virtual focal length ``f = sqrt(W^2 + H^2)`` pixels (principal point at the image centre);
4. the network gives 24 joint rotations (6D, see :func:`~smplify3d_core.geometry.rotations.rot6d_to_matrix`),
   10 betas and a weak-perspective crop camera ``[s, t_x, t_y]``: a body point X (metres, body frame,
   translation not applied) lands at crop pixel ``(crop centre) + 128 s (X_xy + t)``;
5. :func:`cam_crop2full` turns it into a translation in the virtual full-image camera, and
   :func:`translation_for_intrinsics` re-expresses it for a real camera matrix K.

Camera frame everywhere: x right, y down, z forward, metres; image coordinates in pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import cv2
import numpy as np
import torch
from torch import nn

from smplify3d_core.geometry.rotations import matrix_to_axis_angle, matrix_to_rot6d, rot6d_to_matrix
from smplify3d_core.perception.checkpoints import CLIFF_SPEC, CheckpointError, load_state_dict_strict, read_checkpoint
from smplify3d_core.perception.hrnet import HRNetEncoder
from smplify3d_core.perception.resnet import ResNetEncoder
from smplify3d_core.types import PinholeCamera, SMPLParams

CROP_HEIGHT = 256
CROP_WIDTH = 192
BOX_RESCALE = 1.1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_JOINTS = 24
ENCODERS = ("hr48", "res50")

# ----------------------------------------------------------------------------------------------
# network


class CLIFF(nn.Module):
    """CLIFF regressor: image encoder + iterative (3-step) residual SMPL/camera regressor.

    Args:
        encoder: ``"hr48"`` (HRNet-W48, ~79 M parameters in all) or ``"res50"`` (ResNet-50, ~27 M).
        n_iter: number of residual refinement steps (3 in CLIFF).

    Buffers ``init_pose`` (1, 144) 6D mean pose, ``init_shape`` (1, 10), ``init_cam`` (1, 3) are the
    starting point of the regression (overwritten by a checkpoint; here identity rotations, zero
    betas and ``[0.9, 0, 0]``). Regressor: ``fc1`` (2048 + 3 + 144 + 10 + 3 -> 1024), ``drop1``,
    ``fc2`` (1024 -> 1024), ``drop2`` (no activation anywhere), ``decpose`` (-> 144),
    ``decshape`` (-> 10), ``deccam`` (-> 3), each added to the current estimate.
    """

    def __init__(self, encoder: str = "hr48", n_iter: int = 3) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"unknown CLIFF encoder {encoder!r}; expected one of {ENCODERS}")
        self.encoder_name = encoder
        self.n_iter = int(n_iter)
        identity_6d = matrix_to_rot6d(torch.eye(3)).repeat(NUM_JOINTS).reshape(1, NUM_JOINTS * 6)
        self.register_buffer("init_pose", identity_6d.clone())
        self.register_buffer("init_shape", torch.zeros(1, 10))
        self.register_buffer("init_cam", torch.tensor([[0.9, 0.0, 0.0]]))
        self.encoder = HRNetEncoder(width=48) if encoder == "hr48" else ResNetEncoder((3, 4, 6, 3))
        npose, nshape, ncam, nbbox = NUM_JOINTS * 6, 10, 3, 3
        self.fc1 = nn.Linear(self.encoder.feature_dim + nbbox + npose + nshape + ncam, 1024)
        self.drop1 = nn.Dropout()
        self.fc2 = nn.Linear(1024, 1024)
        self.drop2 = nn.Dropout()
        self.decpose = nn.Linear(1024, npose)
        self.decshape = nn.Linear(1024, nshape)
        self.deccam = nn.Linear(1024, ncam)
        self._init_weights()

    def _init_weights(self) -> None:
        """Small decoder weights so an untrained model stays near its initial estimate (as CLIFF).

        Convolutions keep PyTorch's default initialisation, which keeps the activations of a
        random HRNet bounded (CLIFF's He-normal one makes them explode without training); the
        weights only matter for random-weight use (tests), a checkpoint overwrites them.
        """
        for layer in (self.decpose, self.decshape, self.deccam):
            nn.init.xavier_uniform_(layer.weight, gain=0.01)

    def regress(self, features: torch.Tensor, bbox_info: torch.Tensor, n_iter: Optional[int] = None):
        """Iterative regression from encoder features.

        features: (B, 2048); bbox_info: (B, 3). Returns pose6d (B, 144), betas (B, 10), cam (B, 3).
        """
        batch = features.shape[0]
        pose = self.init_pose.expand(batch, -1)
        shape = self.init_shape.expand(batch, -1)
        cam = self.init_cam.expand(batch, -1)
        bbox_info = bbox_info.to(features.dtype)
        for _ in range(self.n_iter if n_iter is None else int(n_iter)):
            x = torch.cat([features, bbox_info, pose, shape, cam], dim=1)
            x = self.drop2(self.fc2(self.drop1(self.fc1(x))))
            pose = self.decpose(x) + pose
            shape = self.decshape(x) + shape
            cam = self.deccam(x) + cam
        return pose, shape, cam

    def forward(self, crops: torch.Tensor, bbox_info: torch.Tensor, n_iter: Optional[int] = None):
        """crops: (B, 3, 256, 192) normalised RGB; bbox_info: (B, 3) (see :func:`make_bbox_info`).

        Returns rotmats (B, 24, 3, 3) (SMPL joint rotations, joint 0 = global orientation, in the
        camera frame), betas (B, 10) and the crop camera (B, 3) ``[s, t_x, t_y]``.
        """
        if crops.ndim != 4 or crops.shape[1] != 3:
            raise ValueError(f"crops must have shape (B, 3, H, W), got {tuple(crops.shape)}")
        if bbox_info.shape != (crops.shape[0], 3):
            raise ValueError(f"bbox_info must have shape ({crops.shape[0]}, 3), got {tuple(bbox_info.shape)}")
        pose6d, betas, cam = self.regress(self.encoder(crops), bbox_info, n_iter)
        rotmats = rot6d_to_matrix(pose6d.reshape(-1, NUM_JOINTS, 6))
        return rotmats, betas, cam


def infer_cliff_encoder(keys) -> str:
    """``"hr48"`` or ``"res50"`` from state-dict names (with or without ``module.``)."""
    names = [k[len("module."):] if k.startswith("module.") else k for k in keys]
    if any(n.startswith("encoder.stage4.") or n.startswith("encoder.transition1.") for n in names):
        return "hr48"
    if any(n.startswith("encoder.layer4.") for n in names):
        return "res50"
    raise CheckpointError(
        f"cannot tell the CLIFF encoder from the checkpoint keys (no 'encoder.stage4.*' for HRNet-W48 nor "
        f"'encoder.layer4.*' for ResNet-50; first keys: {names[:5]})"
    )


def _cliff_state_dict(payload: dict, path) -> dict:
    """The state dict inside a CLIFF file, ``module.`` stripped; CheckpointError if it is not one."""
    state = payload.get("model")
    if state is None and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        state = payload  # a bare state dict
    if not isinstance(state, dict):
        hint = ""
        if "state_dict" in payload:
            hint = " It looks like an mmpose/mmcv checkpoint (e.g. ViTPose), not CLIFF."
        raise CheckpointError(
            f"{path} is not a {CLIFF_SPEC.name} checkpoint: expected {{'model': state_dict}}, found top-level keys "
            f"{sorted(map(str, payload))[:8]}.{hint} Expected a file like {CLIFF_SPEC.example_file} from "
            f"{CLIFF_SPEC.published_at}; set {CLIFF_SPEC.config_key}."
        )
    stripped = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    if not any(k.startswith("encoder.") for k in stripped) or "fc1.weight" not in stripped:
        raise CheckpointError(
            f"{path} does not hold CLIFF weights (no 'encoder.*' / 'fc1.weight'; first keys: {sorted(stripped)[:5]}). "
            f"Is it another network's file? Expected a file like {CLIFF_SPEC.example_file} from "
            f"{CLIFF_SPEC.published_at}; set {CLIFF_SPEC.config_key}."
        )
    return stripped


def load_cliff(path, device="cpu", encoder: Optional[str] = None) -> CLIFF:
    """Load a published CLIFF checkpoint strictly; returns the model in eval mode on ``device``.

    path: ``.pt`` file ``{'model': state_dict}`` (keys may carry ``module.``). encoder: ``"hr48"`` /
    ``"res50"`` or None to infer it from the keys. Raises :class:`CheckpointError` (missing file,
    wrong network, mismatching names/shapes) naming the expected release and the config key.
    """
    payload = read_checkpoint(path, CLIFF_SPEC)
    state = _cliff_state_dict(payload, path)
    inferred = infer_cliff_encoder(state.keys())
    if encoder is not None and encoder != inferred:
        raise CheckpointError(f"{path} holds a CLIFF-{inferred} checkpoint, but encoder={encoder!r} was asked for")
    model = CLIFF(encoder=inferred)
    expected = model.state_dict()
    wrong = [
        f"{k}: file {tuple(v.shape)} vs network {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if wrong:
        raise CheckpointError(
            f"{path} does not match the CLIFF-{inferred} network: {len(wrong)} shape mismatches, e.g. {wrong[:3]}. "
            f"Expected a file like {CLIFF_SPEC.example_file} from {CLIFF_SPEC.published_at}."
        )
    load_state_dict_strict(model, state, path, CLIFF_SPEC)
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------
# geometry of the crop and of the cameras


def estimate_focal_length(width: float, height: float) -> float:
    """CLIFF's virtual focal length for an image without intrinsics: ``sqrt(W^2 + H^2)`` pixels."""
    return float(math.hypot(width, height))


def virtual_camera_matrix(width: int, height: int) -> np.ndarray:
    """(3, 3) K of CLIFF's virtual camera: focal ``sqrt(W^2+H^2)``, principal point (W/2, H/2)."""
    f = estimate_focal_length(width, height)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def boxes_to_center_scale(boxes_xywh, rescale: float = BOX_RESCALE):
    """Boxes (N, 4) ``x, y, w, h`` pixels -> centres (N, 2) pixels and CLIFF scales (N,).

    ``scale = max(w * (256/192), h) / 200 * rescale`` (CLIFF's ``bbox_from_detector``, in the same
    floating-point order, so that ``b = 200 * scale`` and the crop window's rounding match it
    bit for bit); the crop height in image pixels is ``b = 200 scale``.
    """
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    centers = boxes[:, :2] + boxes[:, 2:] / 2.0
    size = np.maximum(boxes[:, 2] * (CROP_HEIGHT / float(CROP_WIDTH)), boxes[:, 3])
    return centers, size / 200.0 * rescale


def crop_window(center, box_size: float) -> np.ndarray:
    """The integer source window of a CLIFF crop: ``(ul_x, ul_y, br_x, br_y)`` image pixels, int64.

    The crop covers image pixel columns ``ul_x .. br_x - 1`` and rows ``ul_y .. br_y - 1`` (pixels
    outside the image read as 0). center: (2,) box centre c, pixels; box_size: b = 200 * scale,
    the crop height in image pixels (the window is ``0.75 b`` x ``b``).

    As CLIFF/SPIN's ``imutils.crop``: the corners are the crop's corner points (0, 0) and
    (192, 256) mapped back into the image through the inverse of the crop transform
    (``x = c_x + (u - 96) * 0.75 b / 192``, ``y = c_y + (v - 128) * b / 256``), rounded half to
    even (numpy's rounding), i.e. ``ul = round(c - (0.75 b, b) / 2)``, ``br = round(c + (0.75 b, b) / 2)``.
    The transform is built and inverted in the same floating-point steps as the reference, so
    values that are exactly halfway round the same way. A window narrower than one pixel (a box
    under ~1.2 pixels, where the reference fails) is widened to one pixel.
    """
    h = float(box_size)
    w = h / (CROP_HEIGHT / float(CROP_WIDTH))
    cx, cy = float(center[0]), float(center[1])
    forward = np.array([
        [CROP_WIDTH / w, 0.0, CROP_WIDTH * (-cx / w + 0.5)],
        [0.0, CROP_HEIGHT / h, CROP_HEIGHT * (-cy / h + 0.5)],
        [0.0, 0.0, 1.0],
    ])
    inverse = np.linalg.inv(forward)
    ul = np.rint(np.dot(inverse, np.array([0.0, 0.0, 1.0]))[:2]).astype(np.int64)
    br = np.rint(np.dot(inverse, np.array([float(CROP_WIDTH), float(CROP_HEIGHT), 1.0]))[:2]).astype(np.int64)
    br = np.maximum(br, ul + 1)
    return np.concatenate([ul, br])


def crop_matrix(center, box_size: float) -> np.ndarray:
    """(2, 3) affine map image pixel -> crop pixel of :func:`crop_person` (pixel centres at integers).

    The window ``ul .. br`` (:func:`crop_window`) is resized edge to edge onto 192 x 256, so
    ``u = (x - ul_x + 0.5) * 192 / (br_x - ul_x) - 0.5`` and ``v = (y - ul_y + 0.5) * 256 / (br_y - ul_y) - 0.5``
    (the two scales differ slightly when the rounded window is not exactly 3:4).
    """
    ul_x, ul_y, br_x, br_y = crop_window(center, box_size)
    ax = CROP_WIDTH / float(br_x - ul_x)
    ay = CROP_HEIGHT / float(br_y - ul_y)
    return np.array([[ax, 0.0, ax * (0.5 - ul_x) - 0.5], [0.0, ay, ay * (0.5 - ul_y) - 0.5]])


def crop_person(image_rgb: np.ndarray, center, box_size: float) -> np.ndarray:
    """CLIFF's crop of a person: (256, 192, 3) float32 RGB, values 0..255 (not rounded).

    image_rgb: (H, W, 3) uint8 RGB; center: (2,) box centre, pixels; box_size: b = 200 * scale, pixels.
    The window of :func:`crop_window` is cut out (zeros where it leaves the image) and resized to
    192 x 256 with ``cv2.resize`` (bilinear) in float32, as the reference does.
    """
    ul_x, ul_y, br_x, br_y = (int(v) for v in crop_window(center, box_size))
    height, width = image_rgb.shape[:2]
    window = np.zeros((br_y - ul_y, br_x - ul_x, image_rgb.shape[2]), dtype=np.float32)
    x0, x1 = max(0, ul_x), min(width, br_x)
    y0, y1 = max(0, ul_y), min(height, br_y)
    if x1 > x0 and y1 > y0:
        window[y0 - ul_y:y1 - ul_y, x0 - ul_x:x1 - ul_x] = image_rgb[y0:y1, x0:x1]
    return cv2.resize(window, (CROP_WIDTH, CROP_HEIGHT), interpolation=cv2.INTER_LINEAR)


def normalize_crops(crops: np.ndarray) -> torch.Tensor:
    """(N, 256, 192, 3) RGB crops (uint8 or float 0..255) -> (N, 3, 256, 192) float32: RGB/255, ImageNet mean/std."""
    x = torch.as_tensor(np.ascontiguousarray(crops), dtype=torch.float32) / 255.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)
    return ((x - mean) / std).permute(0, 3, 1, 2).contiguous()


def _tensor(value, like: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A float tensor (float64 unless ``like`` or ``value`` says otherwise) from a tensor or array-like."""
    if not isinstance(value, torch.Tensor):
        value = torch.from_numpy(np.asarray(value, dtype=np.float64))
    if like is not None:
        return value.to(dtype=like.dtype, device=like.device)
    return value if value.is_floating_point() else value.double()


def _image_wh(image_wh, like: torch.Tensor) -> torch.Tensor:
    return _tensor(image_wh, like).reshape(-1, 2)


def make_bbox_info(centers, box_size, image_wh, focal) -> torch.Tensor:
    """CLIFF's box input (N, 3): ``[2.8 (c_x - W/2) / f, 2.8 (c_y - H/2) / f, (b - 0.24 f) / (0.06 f)]``.

    centers: (N, 2) pixels; box_size: (N,) b in pixels; image_wh: (2,) or (N, 2) (W, H);
    focal: scalar or (N,) pixels.
    """
    centers = _tensor(centers).double().reshape(-1, 2)
    b = _tensor(box_size, centers).reshape(-1)
    f = _tensor(focal, centers).reshape(-1)
    wh = _image_wh(image_wh, centers)
    offset = 2.8 * (centers - wh / 2.0) / f[:, None]
    size = (b - 0.24 * f) / (0.06 * f)
    return torch.cat([offset, size[:, None]], dim=1)


def cam_crop2full(crop_cam, centers, box_size, image_wh, focal, min_scale: float = 1e-3) -> torch.Tensor:
    """Crop camera ``[s, t_x, t_y]`` -> translation (N, 3) metres in the full-image virtual camera.

    ``bs = b s``; ``t = (t_x + 2 (c_x - W/2) / bs, t_y + 2 (c_y - H/2) / bs, 2 f / bs)`` for the camera
    with focal ``f`` pixels and principal point (W/2, H/2). With it, a body point at depth 0 (body
    frame) projects exactly where the crop's weak-perspective camera puts it.
    crop_cam (N, 3); centers (N, 2) px; box_size (N,) b px; image_wh (2,) or (N, 2); focal scalar or (N,).
    A scale ``s`` below ``min_scale`` (a network answer for a crop without a person) is clamped so the
    depth stays finite and positive.
    """
    crop_cam = _tensor(crop_cam).reshape(-1, 3)
    centers = _tensor(centers, crop_cam).reshape(-1, 2)
    b = _tensor(box_size, crop_cam).reshape(-1)
    f = _tensor(focal, crop_cam).reshape(-1)
    wh = _image_wh(image_wh, crop_cam)
    bs = b * crop_cam[:, 0].clamp(min=min_scale)
    tz = 2.0 * f / bs
    txy = crop_cam[:, 1:] + 2.0 * (centers - wh / 2.0) / bs[:, None]
    return torch.cat([txy, tz[:, None]], dim=1)


def translation_for_intrinsics(transl, focal: float, image_wh, K, root_offset=None) -> torch.Tensor:
    """Re-express a translation estimated in CLIFF's virtual camera for a real camera matrix K.

    transl: (N, 3) metres in the virtual camera (focal ``focal`` px, principal point (W/2, H/2));
    K: (3, 3) the real intrinsics (fx, fy, cx, cy); root_offset: (N, 3) or (3,) position of the body
    root relative to the translation point (SMPL pelvis: ``J_0(betas)``, which SMPL's global rotation
    leaves in place); None uses the translation point itself (SMPL's origin, ~0.2 m from the pelvis,
    at almost the same depth). Returns (N, 3) metres in the frame of K.

    Derivation. In the virtual camera the root is at ``P = transl + r`` with depth ``z = P_z`` and
    pixel ``p = (f P_x / z + W/2, f P_y / z + H/2)``. The body's size in pixels is ~``f * size / z``;
    keeping it under K (focal ``f_K = (fx + fy)/2``) needs the depth ``z' = z f_K / f``. Putting the
    root on the ray of the same pixel ``p`` through K at that depth gives
    ``P' = (z' (p_x - cx) / fx, z' (p_y - cy) / fy, z')`` and ``transl' = P' - r``. The root keeps
    its pixel exactly, and points at the root's depth keep theirs up to the fx/fy anisotropy. A point
    at image offset ``D`` px from the root and depth offset ``d`` moves by about
    ``(d/z) (|c_K - c_virtual| + (|p - c_K| + |D|) |1 - f/f_K|)`` px: the two lenses see different
    perspective, which no translation undoes. Below ~1 px when f_K is within a few percent of f;
    a few px (~2-3% of the body's pixel height for a person ~7 m away) for f_K = 0.7 f.
    """
    transl = _tensor(transl).reshape(-1, 3)
    K = _tensor(K.K if isinstance(K, PinholeCamera) else K, transl)
    if K.shape != (3, 3):
        raise ValueError(f"K must be a 3x3 matrix, got shape {tuple(K.shape)}")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    focal = float(focal)
    wh = _image_wh(image_wh, transl)
    root = torch.zeros_like(transl) if root_offset is None else _tensor(root_offset, transl).expand_as(transl)
    P = transl + root
    z = P[:, 2:3]
    pixel = focal * P[:, :2] / z + wh / 2.0
    z_new = z * ((fx + fy) / 2.0) / focal
    x_new = z_new[:, 0] * (pixel[:, 0] - cx) / fx
    y_new = z_new[:, 0] * (pixel[:, 1] - cy) / fy
    return torch.stack([x_new, y_new, z_new[:, 0]], dim=1) - root


# ----------------------------------------------------------------------------------------------
# estimator


@dataclass
class CliffPrediction:
    """CLIFF's answer for N boxes of one image (numpy, float64).

    rotmats (N, 24, 3, 3) joint rotations (0 = global orientation, camera frame); betas (N, 10);
    cam_crop (N, 3) ``[s, t_x, t_y]``; transl_virtual (N, 3) metres in the virtual camera
    ``K_virtual`` (3, 3); transl (N, 3) metres in the frame of ``K`` (3, 3) (= the virtual camera
    when no K was given); centers (N, 2) px, box_size (N,) px (b, the crop height in the image).
    """

    rotmats: np.ndarray
    betas: np.ndarray
    cam_crop: np.ndarray
    transl_virtual: np.ndarray
    transl: np.ndarray
    K_virtual: np.ndarray
    K: np.ndarray
    centers: np.ndarray
    box_size: np.ndarray

    def to_smpl_params(self) -> List[SMPLParams]:
        """One :class:`SMPLParams` per box (axis-angle radians, translation in the frame of K)."""
        aa = matrix_to_axis_angle(torch.as_tensor(self.rotmats, dtype=torch.float64)).numpy()
        return [
            SMPLParams(global_orient=aa[i, 0], body_pose=aa[i, 1:].reshape(-1), betas=self.betas[i], transl=self.transl[i])
            for i in range(len(self.betas))
        ]


def _check_image(image_rgb) -> np.ndarray:
    if not isinstance(image_rgb, np.ndarray):
        raise ValueError(f"image must be a numpy array (H, W, 3) uint8 RGB, got {type(image_rgb).__name__}")
    if image_rgb.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB (H, W, 3), got dtype {image_rgb.dtype}")
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        grayscale = image_rgb.ndim == 2 or (image_rgb.ndim == 3 and image_rgb.shape[2] == 1)
        hint = " (grayscale? convert it with cv2.cvtColor(image, cv2.COLOR_GRAY2RGB))" if grayscale else ""
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got shape {image_rgb.shape}{hint}")
    if image_rgb.shape[0] == 0 or image_rgb.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image_rgb.shape}")
    return np.ascontiguousarray(image_rgb)


def _check_boxes(boxes_xywh, width: int, height: int) -> np.ndarray:
    boxes = np.asarray(boxes_xywh, dtype=np.float64)
    if boxes.ndim == 1 and boxes.shape[0] == 4:
        boxes = boxes[None]
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) as x, y, w, h pixels, got {boxes.shape}")
    for i, (x, y, w, h) in enumerate(boxes):
        if not np.all(np.isfinite([x, y, w, h])):
            raise ValueError(f"box {i} has non-finite values {boxes[i].tolist()}")
        if w <= 0 or h <= 0:
            raise ValueError(f"box {i} has zero or negative area (w={w}, h={h}); boxes are x, y, w, h pixels")
        if x + w <= 0 or y + h <= 0 or x >= width or y >= height:
            raise ValueError(f"box {i} {boxes[i].tolist()} (x, y, w, h) lies completely outside the {width}x{height} image")
    return boxes


class CliffEstimator:
    """Initial SMPL estimates for the people in an image.

    model: a :class:`CLIFF` (e.g. from :func:`load_cliff`); device: where to run it; batch_size:
    crops per forward pass; body: optional :class:`~smplify3d_core.body.model.SMPLBody` used to put
    the pelvis (rather than SMPL's origin) on the same pixel ray when re-expressing for a real K.

    ``estimator(image_rgb (H, W, 3) uint8, boxes_xywh (N, 4) px, K=None) -> list[SMPLParams]``.
    """

    def __init__(self, model: CLIFF, device="cpu", batch_size: int = 8, body=None) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = max(1, int(batch_size))
        self.body = body

    @classmethod
    def from_checkpoint(cls, path, device="cpu", encoder: Optional[str] = None, **kwargs) -> "CliffEstimator":
        """Load a published checkpoint (see :func:`load_cliff`) and wrap it."""
        return cls(load_cliff(path, device=device, encoder=encoder), device=device, **kwargs)

    def preprocess(self, image_rgb: np.ndarray, boxes_xywh):
        """Crops (N, 3, 256, 192), bbox_info (N, 3), centres (N, 2), b (N,), virtual focal (float)."""
        image = _check_image(image_rgb)
        height, width = image.shape[:2]
        boxes = _check_boxes(boxes_xywh, width, height)
        centers, scales = boxes_to_center_scale(boxes)
        box_size = 200.0 * scales
        focal = estimate_focal_length(width, height)
        crops = np.zeros((len(boxes), CROP_HEIGHT, CROP_WIDTH, 3), np.float32)
        for i, (center, size) in enumerate(zip(centers, box_size)):
            crops[i] = crop_person(image, center, size)
        crops_t = normalize_crops(crops)
        bbox_info = make_bbox_info(centers, box_size, (width, height), focal).float()
        return crops_t, bbox_info, centers, box_size, focal

    @torch.inference_mode()
    def estimate(self, image_rgb: np.ndarray, boxes_xywh, K=None) -> CliffPrediction:
        """Run CLIFF on every box; see :class:`CliffPrediction`. K: (3, 3) or PinholeCamera or None."""
        K_used = None
        if K is not None:
            K_used = np.asarray(K.K if isinstance(K, PinholeCamera) else K, dtype=np.float64)
            if K_used.shape != (3, 3) or not np.all(np.isfinite(K_used)) or K_used[0, 0] <= 0 or K_used[1, 1] <= 0:
                raise ValueError(
                    f"K must be a finite 3x3 intrinsics matrix with positive focal lengths, got {K_used.tolist()}"
                )
        crops, bbox_info, centers, box_size, focal = self.preprocess(image_rgb, boxes_xywh)
        height, width = image_rgb.shape[:2]
        K_virtual = virtual_camera_matrix(width, height)
        if K_used is None:
            K_used = K_virtual
        rotmats, betas, cams = [], [], []
        for start in range(0, crops.shape[0], self.batch_size):
            r, s, c = self.model(
                crops[start:start + self.batch_size].to(self.device),
                bbox_info[start:start + self.batch_size].to(self.device),
            )
            rotmats.append(r.double().cpu())
            betas.append(s.double().cpu())
            cams.append(c.double().cpu())
        n = crops.shape[0]
        rotmats_t = torch.cat(rotmats) if rotmats else torch.zeros(0, NUM_JOINTS, 3, 3, dtype=torch.float64)
        betas_t = torch.cat(betas) if betas else torch.zeros(0, 10, dtype=torch.float64)
        cam_t = torch.cat(cams) if cams else torch.zeros(0, 3, dtype=torch.float64)
        transl_virtual = cam_crop2full(cam_t, centers, box_size, (width, height), focal)
        transl = transl_virtual
        if K is not None and n:
            root = None
            if self.body is not None:
                body = self.body
                with torch.no_grad():
                    betas_body = betas_t.to(dtype=body.v_template.dtype, device=body.v_template.device)
                    root = body(betas=betas_body).joints[:, 0].to(torch.float64).cpu()
            transl = translation_for_intrinsics(transl_virtual, focal, (width, height), K_used, root_offset=root)
        return CliffPrediction(
            rotmats=rotmats_t.numpy(),
            betas=betas_t.numpy(),
            cam_crop=cam_t.numpy(),
            transl_virtual=transl_virtual.numpy(),
            transl=transl.numpy(),
            K_virtual=K_virtual,
            K=K_used,
            centers=np.asarray(centers, dtype=np.float64).reshape(-1, 2),
            box_size=np.asarray(box_size, dtype=np.float64).reshape(-1),
        )

    def __call__(self, image_rgb: np.ndarray, boxes_xywh, K=None) -> List[SMPLParams]:
        """list of N :class:`SMPLParams` (global_orient (3,), body_pose (69,), betas (10,), transl (3,)
        metres in the frame of K, or of the virtual camera when K is None)."""
        return self.estimate(image_rgb, boxes_xywh, K).to_smpl_params()
