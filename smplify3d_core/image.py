"""Camera images to the uint8 RGB array every stage uses — one conversion for every entry point.

The ROS node (after decoding the message bytes), the bag tools, the CLI and the dataset readers
all go through :func:`to_rgb8`, so the same camera frame reaches ViTPose and CLIFF identically
whichever way it came in.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

#: Encodings (``sensor_msgs/Image`` names, matched case-insensitively) :func:`to_rgb8` accepts.
RGB8_ENCODINGS: Tuple[str, ...] = (
    "rgb8", "bgr8", "rgba8", "bgra8", "8UC3", "mono8", "8UC1", "mono16", "16UC1", "32FC1",
)
_CANONICAL = {name.lower(): name for name in RGB8_ENCODINGS}


def stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Linearly map the finite values' [min, max] onto [0, 255] (rounded); non-finite and constant images -> 0."""
    a = values.astype(np.float64)
    finite = np.isfinite(a)
    out = np.zeros(a.shape, dtype=np.uint8)
    if not finite.any():
        return out
    lo, hi = float(a[finite].min()), float(a[finite].max())
    if hi <= lo:
        return out
    out[finite] = np.clip(np.rint((a[finite] - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    return out


def to_rgb8(image: np.ndarray, encoding: str) -> np.ndarray:
    """An image with a ``sensor_msgs/Image`` encoding as a contiguous uint8 RGB (H, W, 3) array.

    * ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``: channels reordered, alpha dropped; ``8UC3`` is
      read as ``bgr8`` (OpenCV's order, what drivers publishing the generic type send).
    * ``mono8`` / ``8UC1``: grey replicated to three channels.
    * ``mono16``, ``16UC1`` (uint16) and ``32FC1`` (float32): the finite minimum..maximum of the
      image stretched linearly to 0..255 (16-bit cameras rarely use the full range; depth-like
      images have no fixed one), non-finite pixels 0, a constant image black. Brightness is
      therefore not comparable across frames; this is for the 2D networks, never for metric use.

    image: (H, W) or (H, W, 1) for one-channel encodings, (H, W, C) otherwise, with the dtype of
    the encoding. Raises ValueError naming the encoding for anything else.
    """
    enc = _CANONICAL.get(str(encoding).lower())
    if enc is None:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: {', '.join(RGB8_ENCODINGS)}")
    image = np.asarray(image)
    want = {"mono16": np.uint16, "16UC1": np.uint16, "32FC1": np.float32}.get(enc, np.uint8)
    if image.dtype != want:
        raise ValueError(f"encoding {encoding!r} needs dtype {np.dtype(want).name}, got {image.dtype}")
    channels = {"rgb8": 3, "bgr8": 3, "8UC3": 3, "rgba8": 4, "bgra8": 4}.get(enc, 1)
    if channels == 1:
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim != 2:
            raise ValueError(f"encoding {encoding!r} needs a (H, W) image, got shape {image.shape}")
        grey = image if want is np.uint8 else stretch_to_uint8(image)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if image.ndim != 3 or image.shape[2] != channels:
        raise ValueError(f"encoding {encoding!r} needs a (H, W, {channels}) image, got shape {image.shape}")
    if enc in ("bgr8", "8UC3", "bgra8"):
        image = image[:, :, 2::-1]
    return np.ascontiguousarray(image[:, :, :3])


def check_rgb8(image) -> np.ndarray:
    """``image`` (made contiguous) if it is a uint8 RGB (H, W, 3) array; ValueError saying what to do otherwise."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected the image as a numpy uint8 RGB array (H, W, 3), got {type(image).__name__}")
    gray = image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1)
    if image.dtype == np.uint16:
        kind = "grayscale " if gray else ""
        raise ValueError(f"got a 16-bit {kind}image (dtype uint16, shape {image.shape}); ViTPose expects a uint8 "
                         "RGB image (H, W, 3). Convert it with to_rgb8(image, 'mono16') (or '16UC1').")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3) with values 0..255, got dtype {image.dtype}")
    if gray:
        raise ValueError(f"got a grayscale image of shape {image.shape}; ViTPose expects a uint8 RGB image "
                         "(H, W, 3). Convert it with to_rgb8(image, 'mono8').")
    if image.ndim == 3 and image.shape[2] == 4:
        raise ValueError(f"got a 4-channel image of shape {image.shape}; ViTPose expects a uint8 RGB image "
                         "(H, W, 3). Convert it with to_rgb8(image, 'rgba8') or to_rgb8(image, 'bgra8').")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got shape {image.shape}")
    return np.ascontiguousarray(image)
