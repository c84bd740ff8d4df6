"""Top-down 2D keypoints (COCO-17) with ViTPose: crop, network, flip test, DARK-UDP decode.

The processing equals mmpose 1.x's ``td-hm_ViTPose-*_coco-256x192`` test pipeline
(``GetBBoxCenterScale`` -> ``TopdownAffine(use_udp=True)`` -> flip test in heatmap mode without
shift -> ``UDPHeatmap.decode``), without mmpose:

* box (x, y, w, h) -> centre c = (x + w/2, y + h/2), scale s = 1.25 (w, h), then the smaller side
  enlarged so that s_w / s_h = 192 / 256 = 0.75;
* UDP affine to the 192x256 (W x H) input: u = 191 / s_w (x - c_x + s_w / 2),
  v = 255 / s_h (y - c_y + s_h / 2) (``cv2.warpAffine``, bilinear, black outside the image);
* RGB normalised with mean [123.675, 116.28, 103.53] and std [58.395, 57.12, 57.375];
* flip test: the horizontally mirrored crop's heatmaps are mirrored back (array reversal: with
  UDP, input pixel u <-> 191 - u and heatmap pixel p <-> 47 - p, so no shift) with left/right
  channels swapped (:data:`COCO17_FLIP_INDICES`) and averaged with the plain heatmaps;
* decode (:func:`decode_heatmaps`): argmax, score = heatmap maximum, DARK-UDP Newton step on the
  log of the blurred heatmap, back to the image with x = c + s (p / (47, 63) - 0.5); a map with
  maximum <= 0 gives p = (-1, -1) (mmpose's "no response" location) and its maximum as score.

Coordinates are image pixels with the origin at the centre of the top-left pixel (the OpenCV /
mmpose convention): keypoints (N, 17, 3) = [x, y, score].
"""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import torch
from scipy.ndimage import convolve1d

from smplify3d_core.image import check_rgb8

from .vitpose import HEATMAP_HW, INPUT_HW, NUM_KEYPOINTS

#: COCO-17 keypoint names in the network's channel order.
COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
#: Channel k of a mirrored image's heatmaps is keypoint COCO17_FLIP_INDICES[k] of the original.
COCO17_FLIP_INDICES = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

PIXEL_MEAN = (123.675, 116.28, 103.53)  # RGB, 0..255
PIXEL_STD = (58.395, 57.12, 57.375)
BOX_PADDING = 1.25
INPUT_ASPECT = INPUT_HW[1] / INPUT_HW[0]  # w / h = 0.75
BLUR_KERNEL = 11  # DARK modulation kernel for sigma-2 training heatmaps



# --------------------------------------------------------------------------------------------
# boxes and crops
# --------------------------------------------------------------------------------------------
def box_center_scale(boxes_xywh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop centres and sizes for boxes (N, 4) [x, y, w, h] in pixels.

    Returns centres (N, 2) = (x + w/2, y + h/2) and scales (N, 2) = 1.25 (w, h) with the smaller
    side enlarged to the input aspect w/h = 0.75 (pixels).
    """
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    centers = boxes[:, :2] + 0.5 * boxes[:, 2:]
    scales = BOX_PADDING * boxes[:, 2:]
    wide = scales[:, 0] > scales[:, 1] * INPUT_ASPECT
    scales = np.where(wide[:, None],
                      np.stack([scales[:, 0], scales[:, 0] / INPUT_ASPECT], axis=1),
                      np.stack([scales[:, 1] * INPUT_ASPECT, scales[:, 1]], axis=1))
    return centers, scales


def udp_warp_matrix(center, scale) -> np.ndarray:
    """The (2, 3) affine image -> 192x256 input: u = 191/s_w (x - c_x + s_w/2), v = 255/s_h (y - c_y + s_h/2)."""
    (cx, cy), (sw, sh) = np.asarray(center, np.float64), np.asarray(scale, np.float64)
    ax = (INPUT_HW[1] - 1) / sw
    ay = (INPUT_HW[0] - 1) / sh
    return np.array([[ax, 0.0, ax * (0.5 * sw - cx)], [0.0, ay, ay * (0.5 * sh - cy)]], dtype=np.float64)


def crop_inputs(image_rgb: np.ndarray, centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Warped crops (N, 256, 192, 3) uint8 of an RGB image for crop centres/sizes (N, 2) (pixels)."""
    crops = np.empty((len(centers), INPUT_HW[0], INPUT_HW[1], 3), dtype=np.uint8)
    for i, (center, scale) in enumerate(zip(centers, scales)):
        crops[i] = cv2.warpAffine(image_rgb, udp_warp_matrix(center, scale), (INPUT_HW[1], INPUT_HW[0]),
                                  flags=cv2.INTER_LINEAR)
    return crops


def flip_back_heatmaps(heatmaps: torch.Tensor) -> torch.Tensor:
    """Heatmaps (B, 17, H, W) of mirrored crops -> heatmaps of the original crops (mirror + left/right swap)."""
    return heatmaps.flip(-1)[:, list(COCO17_FLIP_INDICES)]


# --------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------
def _blur_like_dark(maps: np.ndarray, kernel: int) -> np.ndarray:
    """Gaussian blur of (M, H, W) maps with zero padding, each rescaled to keep its maximum (DARK).

    OpenCV's ``kernel`` x ``kernel`` Gaussian (sigma from the size, as ``cv2.GaussianBlur`` with
    sigma 0 takes it), applied as two 1-D passes over the zero-padded maps: the same numbers as
    ``cv2.GaussianBlur`` on a zero border, without its per-call channel limit (512 channels in
    OpenCV 4; OpenCV 5.0 refused a 256-channel stack)."""
    taps = cv2.getGaussianKernel(kernel, 0).astype(np.float32).reshape(-1)
    maps = np.asarray(maps, dtype=np.float32)
    count = maps.shape[0]
    blurred = convolve1d(convolve1d(maps, taps, axis=1, mode="constant"), taps, axis=2, mode="constant")
    old_max = maps.reshape(count, -1).max(axis=1)
    new_max = blurred.reshape(count, -1).max(axis=1)
    ratio = np.divide(old_max, new_max, out=np.ones_like(old_max), where=new_max != 0)
    return blurred * ratio[:, None, None]


def decode_heatmaps(heatmaps: np.ndarray, centers: np.ndarray, scales: np.ndarray,
                    blur_kernel: int = BLUR_KERNEL) -> np.ndarray:
    """Keypoints (N, K, 3) [x, y, score] in image pixels from UDP heatmaps (N, K, 64, 48).

    centers, scales: (N, 2) crop centres and sizes in pixels (:func:`box_center_scale`).
    Per map: integer argmax p, score = the maximum value (raw network output, not clipped; about
    0..1 for real detections); DARK-UDP refinement p <- p - H^-1 g with g, H central-difference
    gradient and Hessian of log(clip(blur_11(map), 1e-3, 50)) (edge-padded; H + eps I), as mmpose's
    ``refine_keypoints_dark_udp``; a non-finite step is replaced by no step. Then
    x = c + s * (p / (W - 1, H - 1) - 0.5).

    A map whose maximum is <= 0 (no response; also a NaN maximum) decodes as mmpose's
    ``get_heatmap_maximum`` does: location p = (-1, -1) heatmap pixels and score = that maximum, then
    the same transform back to the image, so the keypoint lands just outside the crop's top-left
    corner, ``c - s * (0.5 + 1 / (W - 1, H - 1))``. No DARK step is applied to it. mmpose does apply
    one at (-1, -1), but its flattened-index stencil then reads the padded border of the *previous*
    channel (of the last channel for channel 0) instead of this map: the step is exactly zero when
    those border values are flat (clipped to 1e-3, the usual case, where both decodes agree), an
    arbitrary sub-pixel shift when the neighbour map responds at its bottom-right corner, and NaN
    when this map's maximum is exactly 0 (its blur rescaling divides 0 by 0). Such keypoints carry a
    score <= 0 and are never confident, so the fixed (-1, -1) is kept rather than that artefact.
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be (N, K, H, W), got shape {heatmaps.shape}")
    n, k, height, width = heatmaps.shape
    centers = np.asarray(centers, dtype=np.float64).reshape(n, 1, 2)
    scales = np.asarray(scales, dtype=np.float64).reshape(n, 1, 2)
    maps = heatmaps.reshape(n * k, height, width)
    if maps.shape[0] == 0:
        return np.zeros((n, k, 3), dtype=np.float32)

    flat = maps.reshape(n * k, -1)
    index = flat.argmax(axis=1)
    scores = flat[np.arange(n * k), index]
    ix, iy = index % width, index // width

    logs = np.log(np.clip(_blur_like_dark(maps, blur_kernel), 1e-3, 50.0)).astype(np.float64)
    pad = np.pad(logs, ((0, 0), (1, 1), (1, 1)), mode="edge")
    m = np.arange(n * k)
    px, py = ix + 1, iy + 1

    def at(dx: int, dy: int) -> np.ndarray:
        return pad[m, py + dy, px + dx]

    centre = at(0, 0)
    right, left, down, up = at(1, 0), at(-1, 0), at(0, 1), at(0, -1)
    gx = 0.5 * (right - left)
    gy = 0.5 * (down - up)
    hxx = right - 2.0 * centre + left
    hyy = down - 2.0 * centre + up
    hxy = 0.5 * (at(1, 1) - right - down + 2.0 * centre - left - up + at(-1, -1))
    eps = float(np.finfo(np.float32).eps)
    a, d = hxx + eps, hyy + eps
    det = a * d - hxy * hxy
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        step_x = (d * gx - hxy * gy) / det
        step_y = (a * gy - hxy * gx) / det
    bad = ~(np.isfinite(step_x) & np.isfinite(step_y))
    step_x[bad] = 0.0
    step_y[bad] = 0.0
    points = np.stack([ix - step_x, iy - step_y], axis=1)
    points[~(scores > 0)] = -1.0  # no response: mmpose's location (-1, -1), unrefined
    points = points.reshape(n, k, 2)

    xy = centers + scales * (points / np.array([width - 1, height - 1], dtype=np.float64) - 0.5)
    return np.concatenate([xy, scores.reshape(n, k, 1).astype(np.float64)], axis=2).astype(np.float32)


# --------------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------------
class KeypointEstimator:
    """Top-down COCO-17 keypoints for the people in an image, from a :class:`~.vitpose.ViTPose`.

    ``KeypointEstimator(model, device, flip_test=True, half=False)``; ``est(image_rgb, boxes_xywh)``
    -> keypoints (N, 17, 3) float32 [x, y (image pixels), score].

    Args:
        model: a ViTPose (moved to ``device`` and set to eval mode).
        device: torch device for the network.
        flip_test: average with the mirrored crop's heatmaps (mmpose's test setting; 2x the work).
        half: run the network under float16 autocast; CUDA only (ignored with a warning on CPU).
        batch_size: most crops per forward pass (a flip test doubles it).
        on_invalid_box: "raise" (default): a box with a non-finite value, zero/negative width or
            height, or lying entirely outside the image raises ValueError naming its index;
            "skip": such a box gets all-zero keypoints ([0, 0, 0]: score 0) and is not run.
    """

    def __init__(self, model: torch.nn.Module, device="cpu", flip_test: bool = True, half: bool = False,
                 batch_size: int = 32, on_invalid_box: str = "raise") -> None:
        if on_invalid_box not in ("raise", "skip"):
            raise ValueError(f"on_invalid_box must be 'raise' or 'skip', got {on_invalid_box!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.flip_test = bool(flip_test)
        self.half = bool(half)
        if self.half and self.device.type != "cuda":
            warnings.warn(f"half precision is only used on CUDA; running ViTPose in float32 on {self.device}",
                          stacklevel=2)
            self.half = False
        self.batch_size = int(batch_size)
        self.on_invalid_box = on_invalid_box
        self._mean = torch.tensor(PIXEL_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(PIXEL_STD, device=self.device).view(1, 3, 1, 1)

    # -- pieces ---------------------------------------------------------------------------
    def valid_boxes(self, boxes_xywh, image_hw: tuple[int, int]) -> np.ndarray:
        """Boolean (N,) of usable boxes; raises ValueError for a bad one when on_invalid_box == "raise"."""
        boxes = np.asarray(boxes_xywh, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must be an (N, 4) array of [x, y, w, h] pixels, got shape {boxes.shape}")
        height, width = image_hw
        valid = np.ones(len(boxes), dtype=bool)
        for i, (x, y, w, h) in enumerate(boxes):
            if not np.all(np.isfinite([x, y, w, h])):
                reason = "has a non-finite value"
            elif w <= 0 or h <= 0:
                reason = "has zero or negative width/height"
            elif x >= width or y >= height or x + w <= 0 or y + h <= 0:
                reason = f"lies entirely outside the {width}x{height} image"
            else:
                continue
            if self.on_invalid_box == "raise":
                raise ValueError(f"box {i} [x, y, w, h] = {[float(v) for v in (x, y, w, h)]} {reason} "
                                 "(use on_invalid_box='skip' to give such boxes score-0 keypoints)")
            valid[i] = False
        return valid

    @torch.no_grad()
    def infer_heatmaps(self, crops: np.ndarray) -> np.ndarray:
        """Heatmaps (N, 17, 64, 48) float32 for uint8 RGB crops (N, 256, 192, 3), flip test included."""
        outputs = []
        for start in range(0, len(crops), self.batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(crops[start:start + self.batch_size])).to(self.device)
            inputs = (chunk.permute(0, 3, 1, 2).float() - self._mean) / self._std
            if self.flip_test:
                inputs = torch.cat([inputs, inputs.flip(-1)], dim=0)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.half):
                heatmaps = self.model(inputs)
            heatmaps = heatmaps.float()
            if self.flip_test:
                plain, mirrored = heatmaps.chunk(2, dim=0)
                heatmaps = 0.5 * (plain + flip_back_heatmaps(mirrored))
            outputs.append(heatmaps.cpu().numpy())
        if not outputs:
            return np.zeros((0, NUM_KEYPOINTS) + HEATMAP_HW, dtype=np.float32)
        return np.concatenate(outputs, axis=0)

    # -- the call ---------------------------------------------------------------------------
    def __call__(self, image_rgb: np.ndarray, boxes_xywh, return_heatmaps: bool = False):
        """Keypoints (N, 17, 3) float32 [x, y, score] for an RGB uint8 image (H, W, 3) and boxes (N, 4).

        boxes_xywh: [x, y, w, h] in image pixels (top-left corner, size). With
        ``return_heatmaps=True`` also returns the heatmaps (N, 17, 64, 48) (zeros for skipped boxes).
        """
        image = check_rgb8(image_rgb)
        boxes = np.asarray(boxes_xywh, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        valid = self.valid_boxes(boxes, image.shape[:2])
        keypoints = np.zeros((len(boxes), NUM_KEYPOINTS, 3), dtype=np.float32)
        heatmaps = np.zeros((len(boxes), NUM_KEYPOINTS) + HEATMAP_HW, dtype=np.float32)
        if valid.any():
            centers, scales = box_center_scale(boxes[valid])
            crops = crop_inputs(image, centers, scales)
            heatmaps[valid] = self.infer_heatmaps(crops)
            keypoints[valid] = decode_heatmaps(heatmaps[valid], centers, scales)
        return (keypoints, heatmaps) if return_heatmaps else keypoints
