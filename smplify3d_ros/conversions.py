"""Conversions between ROS 2 messages and the numpy / ``smplify3d_core`` types.

Written against the plain message classes only (numpy + OpenCV): ``cv_bridge`` and
``sensor_msgs_py`` are not required. Every failure on malformed or unsupported input raises
:class:`ConversionError` (a ``ValueError``) with a message that names what was wrong.

Conventions
-----------
* Images are numpy arrays indexed ``[row, column(, channel)]``; colour arrays are RGB unless a
  function says otherwise.
* Point clouds are ``(N, 3)`` float64 arrays of metres in the message's ``header.frame_id``.
* Rigid transforms are ``(4, 4)`` homogeneous matrices ``T`` mapping child-frame coordinates to
  parent-frame coordinates (``p_parent = T @ p_child``), as ``geometry_msgs/Transform`` does.
* Quaternions follow ROS: ``(x, y, z, w)``, Hamilton convention.
* Times are float seconds (``builtin_interfaces/Time`` is ``sec`` + ``nanosec``).
"""
from __future__ import annotations

import array
import logging
import math
from typing import Dict, Mapping, Optional, Tuple, Union

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Quaternion, Transform, Vector3
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from smplify3d_core.geometry.transforms import quaternion_to_matrix
from smplify3d_core.image import RGB8_ENCODINGS, to_rgb8
from smplify3d_core.types import PinholeCamera
from smplify3d_ros.stamps import seconds_to_stamp, stamp_to_seconds

__all__ = [
    "ConversionError",
    "IMAGE_ENCODINGS",
    "RGB8_ENCODINGS",
    "image_to_array",
    "image_to_rgb8",
    "array_to_image",
    "compressed_to_rgb8",
    "rgb8_to_compressed",
    "pointcloud2_to_xyz",
    "xyz_to_pointcloud2",
    "camera_info_to_camera",
    "camera_info_distortion_note",
    "transform_to_matrix",
    "matrix_to_transform",
    "stamp_to_seconds",
    "seconds_to_stamp",
]

_log = logging.getLogger(__name__)


class ConversionError(ValueError):
    """A ROS message cannot be converted (unsupported encoding, missing fields, bad sizes...)."""


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

def _as_uint8_buffer(data) -> np.ndarray:
    """A zero-copy uint8 view of a message ``data`` field (array.array('B'), bytes or a list)."""
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def _to_byte_array(buf: np.ndarray) -> array.array:
    """Pack a numpy array's bytes into the ``array.array('B')`` that uint8[] fields store."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(buf).tobytes())
    return out


def _make_header(header: Optional[Header] = None, frame_id: Optional[str] = None, stamp=None) -> Header:
    h = Header() if header is None else header
    if frame_id is not None:
        h.frame_id = str(frame_id)
    if stamp is not None:
        h.stamp = stamp if isinstance(stamp, Time) else seconds_to_stamp(float(stamp))
    return h


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------

#: encoding -> (numpy base dtype, channels). Mirrors ``sensor_msgs/image_encodings.hpp``.
IMAGE_ENCODINGS: Dict[str, Tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "8UC4": (np.dtype(np.uint8), 4),
    "16UC1": (np.dtype(np.uint16), 1),
    "16SC1": (np.dtype(np.int16), 1),
    "32FC1": (np.dtype(np.float32), 1),
    "64FC1": (np.dtype(np.float64), 1),
}



def _encoding_spec(encoding: str, supported) -> Tuple[np.dtype, int]:
    if encoding not in IMAGE_ENCODINGS or encoding not in supported:
        raise ConversionError(
            f"unsupported image encoding {encoding!r}; supported encodings: {', '.join(supported)}"
        )
    return IMAGE_ENCODINGS[encoding]


def image_to_array(msg: Image) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into an array keeping its dtype and channel order.

    Returns ``(H, W)`` for single-channel encodings (mono8, mono16, 8UC1, 16UC1, 16SC1, 32FC1,
    64FC1) and ``(H, W, C)`` otherwise, in the message's channel order (``bgr8`` stays BGR).
    Multi-byte data is returned in native byte order whatever ``is_bigendian`` says, and row
    padding (``step > width * channels * itemsize``) is dropped. The result is a fresh array
    (writeable, not sharing the message buffer).

    Raises ConversionError for an unsupported encoding or a ``data``/``step`` inconsistent with
    ``height``/``width``.
    """
    dtype, channels = _encoding_spec(msg.encoding, tuple(IMAGE_ENCODINGS))
    h, w = int(msg.height), int(msg.width)
    row_bytes = w * channels * dtype.itemsize
    step = int(msg.step) if msg.step else row_bytes
    if step < row_bytes:
        raise ConversionError(
            f"image step {step} is smaller than width*channels*itemsize = {row_bytes} "
            f"({msg.encoding}, {w}x{h})"
        )
    buf = _as_uint8_buffer(msg.data)
    shape = (h, w) if channels == 1 else (h, w, channels)
    if h == 0 or w == 0:
        return np.zeros(shape, dtype=dtype)
    needed = (h - 1) * step + row_bytes
    if buf.size < needed:
        raise ConversionError(
            f"image data has {buf.size} bytes, expected at least {needed} "
            f"({msg.encoding}, {w}x{h}, step {step})"
        )
    rows = np.lib.stride_tricks.as_strided(buf, shape=(h, row_bytes), strides=(step, 1))
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    arr = np.ascontiguousarray(rows).view(wire).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def image_to_rgb8(msg: Image) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into an ``(H, W, 3)`` uint8 RGB array.

    The bytes are decoded by :func:`image_to_array`; the pixels then go through
    :func:`smplify3d_core.image.to_rgb8`, the one conversion every entry point uses (its docstring
    lists the encodings and how 16-bit and float images are mapped). Anything else (``yuv422``,
    ``bayer_rggb8``, ``16UC3``...) raises ConversionError naming the encoding and the supported list.
    """
    _encoding_spec(msg.encoding, RGB8_ENCODINGS)
    try:
        return to_rgb8(image_to_array(msg), msg.encoding)
    except ValueError as error:
        raise ConversionError(str(error)) from error


def array_to_image(
    array_: np.ndarray,
    encoding: str,
    header: Optional[Header] = None,
    big_endian: bool = False,
    step: Optional[int] = None,
) -> Image:
    """Encode an array as a ``sensor_msgs/Image`` (the inverse of :func:`image_to_array`).

    array_: ``(H, W)`` or ``(H, W, 1)`` for single-channel encodings, ``(H, W, C)`` otherwise, in
        the encoding's channel order (pass RGB for ``rgb8``, BGR for ``bgr8``). Values are cast to
        the encoding's dtype (uint8, uint16, float32...) after a range check for integer types.
    encoding: one of :data:`IMAGE_ENCODINGS`.
    header: copied into the message (default: an empty Header).
    big_endian: write multi-byte samples big-endian and set ``is_bigendian``.
    step: bytes per row; default ``W * C * itemsize``; a larger value pads each row with zeros.
    """
    dtype, channels = _encoding_spec(encoding, tuple(IMAGE_ENCODINGS))
    a = np.asarray(array_)
    if channels == 1 and a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    expected_ndim = 2 if channels == 1 else 3
    if a.ndim != expected_ndim or (channels > 1 and a.shape[2] != channels):
        want = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise ConversionError(f"encoding {encoding!r} needs an array of shape {want}, got {a.shape}")
    if dtype.kind in "iu" and a.dtype.kind == "f" and a.size and not np.all(np.isfinite(a)):
        raise ConversionError(f"encoding {encoding!r} is integer but the array has non-finite values")
    if dtype.kind in "iu" and a.size:
        info = np.iinfo(dtype)
        lo, hi = a.min(), a.max()
        if lo < info.min or hi > info.max:
            raise ConversionError(
                f"values [{lo}, {hi}] do not fit encoding {encoding!r} ({dtype.name})"
            )
    h, w = int(a.shape[0]), int(a.shape[1])
    wire = dtype.newbyteorder(">" if big_endian else "<")
    payload = np.ascontiguousarray(a.astype(wire, copy=False)).view(np.uint8).reshape(h, -1)
    row_bytes = w * channels * dtype.itemsize
    if step is None:
        step = row_bytes
    if step < row_bytes:
        raise ConversionError(f"step {step} is smaller than one row of {row_bytes} bytes")
    if step > row_bytes:
        padded = np.zeros((h, step), dtype=np.uint8)
        padded[:, :row_bytes] = payload
        payload = padded
    msg = Image()
    msg.header = _make_header(header)
    msg.height, msg.width = h, w
    msg.encoding = encoding
    msg.is_bigendian = 1 if big_endian else 0
    msg.step = int(step)
    msg.data = _to_byte_array(payload)
    return msg


def compressed_to_rgb8(msg: CompressedImage) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) into ``(H, W, 3)`` uint8 RGB.

    ``format`` may be plain (``"jpeg"``, ``"png"``) or image_transport style
    (``"rgb8; jpeg compressed bgr8"``); the payload itself decides the codec. 16-bit PNGs are
    reduced to 8 bits by OpenCV; grey images are replicated to 3 channels. ``compressedDepth``
    payloads (a depth-specific header + PNG) are not colour images and raise ConversionError, as
    does an empty or corrupt payload.
    """
    import cv2

    fmt = (msg.format or "").strip()
    if "compresseddepth" in fmt.lower():
        raise ConversionError(
            f"compressed image format {fmt!r} is a compressedDepth image, not a colour image"
        )
    buf = _as_uint8_buffer(msg.data)
    if buf.size == 0:
        raise ConversionError(f"compressed image (format {fmt!r}) has an empty payload")
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # pragma: no cover - OpenCV usually returns None instead
        raise ConversionError(f"cannot decode compressed image (format {fmt!r}): {exc}") from exc
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ConversionError(
            f"cannot decode compressed image (format {fmt!r}, {buf.size} bytes): corrupt or "
            "not a JPEG/PNG payload"
        )
    return np.ascontiguousarray(bgr[..., ::-1])


def rgb8_to_compressed(
    array_: np.ndarray,
    format: str = "jpeg",  # noqa: A002 - mirrors the message field name
    header: Optional[Header] = None,
    jpeg_quality: int = 95,
) -> CompressedImage:
    """Encode an ``(H, W, 3)`` uint8 RGB array as a ``sensor_msgs/CompressedImage``.

    format: ``"jpeg"`` (lossy, ``jpeg_quality`` 0..100) or ``"png"`` (lossless). The message's
    ``format`` field follows image_transport (``"rgb8; jpeg compressed bgr8"``), which
    image_transport's decoders, rviz and :func:`compressed_to_rgb8` all understand.
    """
    import cv2

    fmt = format.lower()
    if fmt in ("jpg", "jpeg"):
        ext, params, fmt = ".jpg", [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)], "jpeg"
    elif fmt == "png":
        ext, params = ".png", []
    else:
        raise ConversionError(f"unsupported compression format {format!r}; use 'jpeg' or 'png'")
    a = np.asarray(array_)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ConversionError(f"rgb8_to_compressed needs an (H, W, 3) uint8 array, got {a.shape} {a.dtype}")
    ok, enc = cv2.imencode(ext, np.ascontiguousarray(a[..., ::-1]), params)
    if not ok:  # pragma: no cover
        raise ConversionError(f"OpenCV failed to encode a {a.shape} image as {fmt}")
    msg = CompressedImage()
    msg.header = _make_header(header)
    msg.format = f"rgb8; {fmt} compressed bgr8"
    msg.data = _to_byte_array(enc)
    return msg


# ----------------------------------------------------------------------------------------------
# Point clouds
# ----------------------------------------------------------------------------------------------

#: PointField datatype -> numpy dtype (native order; byte order is applied per message).
_POINTFIELD_DTYPES: Dict[int, np.dtype] = {
    PointField.INT8: np.dtype(np.int8),
    PointField.UINT8: np.dtype(np.uint8),
    PointField.INT16: np.dtype(np.int16),
    PointField.UINT16: np.dtype(np.uint16),
    PointField.INT32: np.dtype(np.int32),
    PointField.UINT32: np.dtype(np.uint32),
    PointField.FLOAT32: np.dtype(np.float32),
    PointField.FLOAT64: np.dtype(np.float64),
}
_DTYPE_TO_POINTFIELD = {v: k for k, v in _POINTFIELD_DTYPES.items()}


def pointcloud2_to_xyz(msg: PointCloud2, keep_invalid: bool = False) -> np.ndarray:
    """Extract the x, y, z of every point of a ``sensor_msgs/PointCloud2`` as ``(N, 3)`` float64.

    Works for any layout: x/y/z of any numeric PointField datatype (FLOAT32, FLOAT64, integer
    types are cast) at any offsets, extra fields (intensity, ring, t, rgb...) ignored, padding
    inside ``point_step`` and at the end of each row (``row_step``), organized clouds
    (``height > 1``; points come out row-major), and either byte order (``is_bigendian``).
    The data is read through a numpy structured dtype (no per-point Python), so millions of
    points take tens of milliseconds.

    keep_invalid: False (default) drops points with any NaN/inf coordinate; True keeps all
        ``height * width`` points so an organized cloud can be reshaped to ``(height, width, 3)``.
    Units are those of the message (metres by REP 103), in ``msg.header.frame_id``.

    A cloud with no points (``width * height == 0``) gives ``(0, 3)``. Missing x/y/z fields, a
    field not fitting in ``point_step`` or too little data raise ConversionError.
    """
    h, w = int(msg.height), int(msg.width)
    n = h * w
    fields = {f.name: f for f in msg.fields}
    if n == 0:
        return np.zeros((0, 3), dtype=np.float64)
    missing = [c for c in ("x", "y", "z") if c not in fields]
    if missing:
        present = ", ".join(repr(name) for name in fields) or "none"
        raise ConversionError(
            f"point cloud has no {'/'.join(missing)} field(s); fields present: {present}"
        )
    point_step = int(msg.point_step)
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for c in ("x", "y", "z"):
        f = fields[c]
        base = _POINTFIELD_DTYPES.get(int(f.datatype))
        if base is None:
            raise ConversionError(f"point cloud field {c!r} has unknown PointField datatype {f.datatype}")
        if int(f.offset) + base.itemsize > point_step:
            raise ConversionError(
                f"point cloud field {c!r} (offset {f.offset}, {base.itemsize} bytes) does not fit "
                f"in point_step {point_step}"
            )
        names.append(c)
        formats.append(base.newbyteorder(order))
        offsets.append(int(f.offset))
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})

    buf = _as_uint8_buffer(msg.data)
    row_bytes = w * point_step
    row_step = int(msg.row_step) if msg.row_step else row_bytes
    if row_step < row_bytes:
        raise ConversionError(f"point cloud row_step {row_step} < width*point_step = {row_bytes}")
    needed = (h - 1) * row_step + row_bytes
    if buf.size < needed:
        raise ConversionError(
            f"point cloud data has {buf.size} bytes, expected at least {needed} "
            f"({h}x{w} points, point_step {point_step}, row_step {row_step})"
        )
    if row_step == row_bytes or h == 1:
        pts = np.frombuffer(buf[: n * point_step] if h == 1 else buf[:needed], dtype=dtype, count=n)
    else:
        rows = np.lib.stride_tricks.as_strided(buf, shape=(h, row_bytes), strides=(row_step, 1))
        pts = np.ascontiguousarray(rows).reshape(-1).view(dtype)

    xyz = np.empty((n, 3), dtype=np.float64)
    with np.errstate(invalid="ignore"):  # garbage bytes (a wrong endianness) may read as NaN: dropped below
        xyz[:, 0] = pts["x"]
        xyz[:, 1] = pts["y"]
        xyz[:, 2] = pts["z"]
    if not keep_invalid and xyz.dtype.kind == "f":
        valid = np.isfinite(xyz).all(axis=1)
        if not valid.all():
            xyz = xyz[valid]
    return xyz


def xyz_to_pointcloud2(
    points: np.ndarray,
    frame_id: str = "",
    stamp: Union[Time, float, None] = None,
    extra_fields: Optional[Mapping[str, np.ndarray]] = None,
    big_endian: bool = False,
    point_step: Optional[int] = None,
    xyz_dtype=np.float32,
    row_step: Optional[int] = None,
) -> PointCloud2:
    """Build a ``sensor_msgs/PointCloud2`` from points.

    points: ``(N, 3)`` (an unorganized cloud, height 1) or ``(H, W, 3)`` (organized), metres.
    frame_id, stamp: the header (stamp as a Time message or float seconds; default zero).
    extra_fields: name -> array of shape ``(N,)`` / ``(H, W)``; each field's PointField datatype
        follows the array's dtype (float32 -> FLOAT32, uint16 -> UINT16...; 64-bit ints are not
        representable and raise). Fields are packed after x, y, z at their natural alignment.
    big_endian: write the data big-endian and set ``is_bigendian``.
    point_step: bytes per point; default the packed size; a larger value pads every point.
    xyz_dtype: np.float32 (FLOAT32, the common case) or np.float64 (FLOAT64).
    row_step: bytes per row; default ``width * point_step``; larger pads every row.
    ``is_dense`` is set when all coordinates are finite.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 3:
        h, w = 1, p.shape[0]
    elif p.ndim == 3 and p.shape[2] == 3:
        h, w = p.shape[0], p.shape[1]
    else:
        raise ConversionError(f"points must have shape (N, 3) or (H, W, 3), got {p.shape}")
    n = h * w
    p = p.reshape(n, 3)
    base_xyz = np.dtype(xyz_dtype)
    if base_xyz not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ConversionError(f"xyz_dtype must be float32 or float64, got {base_xyz}")
    order = ">" if big_endian else "<"

    layout = []  # (name, base dtype, offset, values (n,))
    offset = 0
    for i, c in enumerate("xyz"):
        layout.append((c, base_xyz, offset, p[:, i]))
        offset += base_xyz.itemsize
    for name, values in (extra_fields or {}).items():
        v = np.asarray(values)
        if v.size != n:
            raise ConversionError(f"extra field {name!r} has {v.size} values for {n} points")
        base = v.dtype.newbyteorder("=")
        if base == np.dtype(bool):
            base = np.dtype(np.uint8)
        if base not in _DTYPE_TO_POINTFIELD:
            raise ConversionError(f"extra field {name!r} has dtype {v.dtype}, not a PointField datatype")
        offset = -(-offset // base.itemsize) * base.itemsize  # natural alignment
        layout.append((name, base, offset, v.reshape(n)))
        offset += base.itemsize
    packed = offset
    if point_step is None:
        point_step = packed
    if point_step < packed:
        raise ConversionError(f"point_step {point_step} is smaller than the {packed} bytes the fields need")

    dtype = np.dtype({
        "names": [f[0] for f in layout],
        "formats": [f[1].newbyteorder(order) for f in layout],
        "offsets": [f[2] for f in layout],
        "itemsize": point_step,
    })
    rec = np.zeros(n, dtype=dtype)
    for name, _base, _off, values in layout:
        rec[name] = values
    payload = rec.view(np.uint8).reshape(h, w * point_step)
    row_bytes = w * point_step
    if row_step is None:
        row_step = row_bytes
    if row_step < row_bytes:
        raise ConversionError(f"row_step {row_step} is smaller than width*point_step = {row_bytes}")
    if row_step > row_bytes:
        padded = np.zeros((h, row_step), dtype=np.uint8)
        padded[:, :row_bytes] = payload
        payload = padded

    msg = PointCloud2()
    msg.header = _make_header(None, frame_id=frame_id, stamp=stamp)
    msg.height, msg.width = h, w
    msg.fields = [
        PointField(name=name, offset=off, datatype=_DTYPE_TO_POINTFIELD[base], count=1)
        for name, base, off, _v in layout
    ]
    msg.is_bigendian = bool(big_endian)
    msg.point_step = int(point_step)
    msg.row_step = int(row_step)
    msg.data = _to_byte_array(payload)
    msg.is_dense = bool(np.isfinite(p).all())
    return msg


# ----------------------------------------------------------------------------------------------
# Camera info
# ----------------------------------------------------------------------------------------------

def camera_info_distortion_note(msg: CameraInfo) -> Optional[str]:
    """A one-line note when ``msg.d`` has non-zero coefficients, else None.

    The core assumes a rectified (undistorted) pinhole image; with a distorted camera, subscribe
    to the ``image_rect`` topic (image_proc) and its camera_info, whose ``d`` is zero.
    """
    d = np.asarray(msg.d, dtype=np.float64)
    if d.size and np.any(d != 0):
        return (
            f"camera_info has non-zero distortion ({msg.distortion_model or 'unknown model'}, "
            f"d = {np.round(d, 6).tolist()}); SMPLify-3D assumes a rectified image: "
            "subscribe to image_rect (image_proc) instead of image_raw"
        )
    return None


def camera_info_to_camera(msg: CameraInfo, logger=None) -> PinholeCamera:
    """Build a :class:`~smplify3d_core.types.PinholeCamera` from a ``sensor_msgs/CameraInfo``.

    Uses ``k`` (the 3x3 row-major intrinsics of the raw image, pixels) and ``width``/``height``
    (pixels). Distortion ``d`` is not applied: the core assumes a rectified image, so when ``d``
    is non-zero a warning (:func:`camera_info_distortion_note`) is logged via ``logger`` (an rclpy
    logger or a ``logging.Logger``; default this module's logger) — subscribe to ``image_rect``.
    ``binning`` / ``roi`` are not applied either (the image is assumed full-resolution).

    Raises ConversionError("camera_info has no valid intrinsics: K = ...") for K all zero (an
    uncalibrated camera), non-finite or non-positive focal lengths, a bad last row, or a zero
    image size.
    """
    K = np.asarray(msg.k, dtype=np.float64)
    if K.size != 9:
        raise ConversionError(f"camera_info has no valid intrinsics: K has {K.size} values, expected 9")
    K = K.reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ConversionError(f"camera_info has no valid intrinsics: K = {K.tolist()}")
    try:
        cam = PinholeCamera(K=K, width=int(msg.width), height=int(msg.height))
    except ValueError as exc:
        raise ConversionError(
            f"camera_info has no valid intrinsics: K = {K.tolist()}, size {msg.width}x{msg.height} ({exc})"
        ) from exc
    note = camera_info_distortion_note(msg)
    if note is not None:
        log = logger if logger is not None else _log
        (getattr(log, "warning", None) or getattr(log, "warn"))(note)
    return cam


# ----------------------------------------------------------------------------------------------
# Transforms and time
# ----------------------------------------------------------------------------------------------

def _quat_to_rot(x: float, y: float, z: float, w: float) -> np.ndarray:
    try:
        return quaternion_to_matrix(x, y, z, w)
    except ValueError as error:
        raise ConversionError(str(error)) from None


def _rot_to_quat(R: np.ndarray) -> Tuple[float, float, float, float]:
    """Rotation matrix -> unit quaternion (x, y, z, w) with w >= 0 (Shepperd's method)."""
    m = R
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        w, x = 0.25 * s, (m[2, 1] - m[1, 2]) / s
        y, z = (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        w, x = (m[2, 1] - m[1, 2]) / s, 0.25 * s
        y, z = (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        w, x = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s
        y, z = 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        w, x = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s
        y, z = (m[1, 2] + m[2, 1]) / s, 0.25 * s
    q = np.array([x, y, z, w])
    q /= np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return float(q[0]), float(q[1]), float(q[2]), float(q[3])


def transform_to_matrix(msg: Transform) -> np.ndarray:
    """``geometry_msgs/Transform`` -> ``(4, 4)`` float64 homogeneous matrix.

    Translation in metres; rotation from the (x, y, z, w) quaternion (normalised first; a zero or
    non-finite quaternion raises ConversionError). ``T`` maps child-frame points into the parent
    frame: ``p_parent = T[:3, :3] @ p_child + T[:3, 3]``.
    """
    q = msg.rotation
    T = np.eye(4)
    T[:3, :3] = _quat_to_rot(q.x, q.y, q.z, q.w)
    t = msg.translation
    T[:3, 3] = (t.x, t.y, t.z)
    if not np.all(np.isfinite(T)):
        raise ConversionError(f"transform has a non-finite translation: {T[:3, 3].tolist()}")
    return T


def matrix_to_transform(T: np.ndarray) -> Transform:
    """``(4, 4)`` (or ``(3, 4)``) rigid transform -> ``geometry_msgs/Transform``.

    The rotation block is projected onto the nearest rotation (SVD) before conversion, so small
    numerical drift is tolerated; the quaternion is returned with ``w >= 0``.
    """
    M = np.asarray(T, dtype=np.float64)
    if M.shape not in ((4, 4), (3, 4)) or not np.all(np.isfinite(M)):
        raise ConversionError(f"transform matrix must be a finite 4x4 (or 3x4), got shape {M.shape}")
    U, _s, Vt = np.linalg.svd(M[:3, :3])
    R = U @ Vt
    if np.linalg.det(R) < 0:
        raise ConversionError("transform matrix has a reflection (det < 0), not a rotation")
    x, y, z, w = _rot_to_quat(R)
    out = Transform()
    out.translation = Vector3(x=float(M[0, 3]), y=float(M[1, 3]), z=float(M[2, 3]))
    out.rotation = Quaternion(x=x, y=y, z=z, w=w)
    return out
