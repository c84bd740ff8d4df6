"""ROS 2 message conversions (smplify3d_ros.conversions) with the real rclpy message classes."""
import pytest

rclpy = pytest.importorskip("rclpy")  # import early: the wheels' bootstrapper may re-exec python

import struct  # noqa: E402

import numpy as np  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import Quaternion, Transform, Vector3  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from smplify3d_ros.conversions import (  # noqa: E402
    ConversionError,
    array_to_image,
    camera_info_distortion_note,
    camera_info_to_camera,
    compressed_to_rgb8,
    image_to_array,
    image_to_rgb8,
    matrix_to_transform,
    pointcloud2_to_xyz,
    rgb8_to_compressed,
    seconds_to_stamp,
    stamp_to_seconds,
    transform_to_matrix,
    xyz_to_pointcloud2,
)

RNG = np.random.default_rng(7)


def _wire(msg):
    """Serialize to CDR and back: proves the message is a real, well-formed ROS message."""
    return deserialize_message(serialize_message(msg), type(msg))


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------

def test_rgb8_and_bgr8_round_trip_through_cdr():
    rgb = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    header = Header(frame_id="cam", stamp=Time(sec=3, nanosec=5))
    msg = _wire(array_to_image(rgb, "rgb8", header=header))
    assert (msg.height, msg.width, msg.step, msg.encoding) == (5, 7, 21, "rgb8")
    assert msg.header.frame_id == "cam" and msg.header.stamp.nanosec == 5
    np.testing.assert_array_equal(image_to_array(msg), rgb)
    np.testing.assert_array_equal(image_to_rgb8(msg), rgb)

    bgr_msg = _wire(array_to_image(rgb[..., ::-1], "bgr8"))
    np.testing.assert_array_equal(image_to_array(bgr_msg), rgb[..., ::-1])
    np.testing.assert_array_equal(image_to_rgb8(bgr_msg), rgb)
    # 8UC3 is treated as bgr8
    np.testing.assert_array_equal(image_to_rgb8(array_to_image(rgb[..., ::-1], "8UC3")), rgb)


def test_rgba_bgra_and_mono8():
    rgb = RNG.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    alpha = np.full((4, 6, 1), 200, np.uint8)
    np.testing.assert_array_equal(image_to_rgb8(array_to_image(np.concatenate([rgb, alpha], 2), "rgba8")), rgb)
    np.testing.assert_array_equal(
        image_to_rgb8(array_to_image(np.concatenate([rgb[..., ::-1], alpha], 2), "bgra8")), rgb)
    grey = RNG.integers(0, 256, size=(4, 6), dtype=np.uint8)
    msg = _wire(array_to_image(grey, "mono8"))
    np.testing.assert_array_equal(image_to_array(msg), grey)
    out = image_to_rgb8(msg)
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_16bit_round_trip(encoding):
    a = RNG.integers(0, 65536, size=(6, 9), dtype=np.uint16)
    a[0, 0], a[0, 1] = 0, 65535
    msg = _wire(array_to_image(a, encoding))
    out = image_to_array(msg)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, a)
    rgb = image_to_rgb8(msg)
    assert rgb.shape == (6, 9, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == 0 and rgb[0, 1, 0] == 255


def test_mono16_big_endian():
    a = np.array([[0x0102, 0xA0B0, 7]], dtype=np.uint16)
    msg = array_to_image(a, "mono16", big_endian=True)
    assert msg.is_bigendian == 1
    assert bytes(msg.data) == struct.pack(">3H", 0x0102, 0xA0B0, 7)
    np.testing.assert_array_equal(image_to_array(_wire(msg)), a)
    # a hand-built big-endian message reads the same
    hand = Image(height=1, width=3, encoding="mono16", is_bigendian=1, step=6,
                 data=struct.pack(">3H", 0x0102, 0xA0B0, 7))
    np.testing.assert_array_equal(image_to_array(hand), a)


def test_32fc1_round_trip_and_depth_scaling():
    d = RNG.uniform(0.5, 4.0, size=(5, 8)).astype(np.float32)
    d[1, 1] = np.nan
    d[2, 2] = np.inf
    d[0, 0], d[0, 1] = 0.5, 4.0
    msg = _wire(array_to_image(d, "32FC1"))
    np.testing.assert_array_equal(image_to_array(msg), d)  # NaN == NaN under assert_array_equal
    rgb = image_to_rgb8(msg)
    assert rgb[0, 0, 0] == 0 and rgb[0, 1, 0] == 255
    assert rgb[1, 1, 0] == 0 and rgb[2, 2, 0] == 0  # non-finite -> 0
    expected = np.rint((d[3, 3] - 0.5) * 255 / 3.5)
    assert abs(int(rgb[3, 3, 1]) - expected) <= 1
    # a constant image gives zeros, not a division by zero
    assert not image_to_rgb8(array_to_image(np.ones((2, 2), np.float32), "32FC1")).any()


def test_row_padding():
    rgb = RNG.integers(0, 256, size=(3, 5, 3), dtype=np.uint8)
    msg = array_to_image(rgb, "rgb8", step=32)  # 15 bytes of pixels + 17 of padding per row
    assert msg.step == 32 and len(msg.data) == 96
    msg = _wire(msg)
    np.testing.assert_array_equal(image_to_rgb8(msg), rgb)
    # hand-built padded mono16 (odd padding) too
    a = np.arange(6, dtype=np.uint16).reshape(2, 3) * 1000
    raw = a.astype("<u2").tobytes()
    data = raw[:6] + b"\xee" * 3 + raw[6:] + b"\xee" * 3
    hand = Image(height=2, width=3, encoding="mono16", is_bigendian=0, step=9, data=data)
    np.testing.assert_array_equal(image_to_array(hand), a)


@pytest.mark.parametrize("encoding", ["yuv422", "bayer_rggb8", "16UC3"])
def test_unsupported_encoding(encoding):
    msg = Image(height=2, width=2, encoding=encoding, step=8, data=bytes(16))
    with pytest.raises(ConversionError) as exc:
        image_to_rgb8(msg)
    assert encoding in str(exc.value) and "rgb8" in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_truncated_image_data():
    msg = Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(40))
    with pytest.raises(ConversionError, match="bytes"):
        image_to_rgb8(msg)


def test_compressed_png_exact_and_jpeg_approximate():
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, 48, dtype=np.uint8)[None, :]
    rgb[..., 1] = np.linspace(0, 255, 32, dtype=np.uint8)[:, None]
    rgb[8:20, 10:30, 2] = 180
    png = _wire(rgb8_to_compressed(rgb, "png"))
    assert "png" in png.format
    np.testing.assert_array_equal(compressed_to_rgb8(png), rgb)
    jpg = _wire(rgb8_to_compressed(rgb, "jpeg"))
    assert "jpeg" in jpg.format
    out = compressed_to_rgb8(jpg)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 4.0
    # a plain "jpeg" format string is accepted too
    plain = CompressedImage(format="jpeg", data=jpg.data)
    np.testing.assert_array_equal(compressed_to_rgb8(plain), out)


def test_compressed_corrupt_payload():
    with pytest.raises(ConversionError, match="corrupt"):
        compressed_to_rgb8(CompressedImage(format="jpeg", data=b"\xff\xd8not really a jpeg" * 5))
    with pytest.raises(ConversionError, match="empty"):
        compressed_to_rgb8(CompressedImage(format="png"))


# ----------------------------------------------------------------------------------------------
# Point clouds
# ----------------------------------------------------------------------------------------------

def _points(n):
    return RNG.uniform(-5, 5, size=(n, 3))


def test_pointcloud_round_trip_through_cdr():
    p = _points(100)
    msg = _wire(xyz_to_pointcloud2(p, "lidar", stamp=12.5))
    assert msg.header.frame_id == "lidar" and stamp_to_seconds(msg.header.stamp) == 12.5
    assert (msg.height, msg.width, msg.point_step) == (1, 100, 12) and msg.is_dense
    out = pointcloud2_to_xyz(msg)
    assert out.shape == (100, 3) and out.dtype == np.float64
    np.testing.assert_allclose(out, p.astype(np.float32), rtol=0, atol=0)


def test_pointcloud_extra_fields_and_padding():
    p = _points(50)
    intensity = RNG.uniform(0, 1, 50).astype(np.float32)
    ring = RNG.integers(0, 128, 50).astype(np.uint16)
    t = RNG.uniform(0, 0.1, 50).astype(np.float64)
    msg = xyz_to_pointcloud2(p, "os", extra_fields={"intensity": intensity, "ring": ring, "t": t},
                             point_step=48)
    names = [f.name for f in msg.fields]
    assert names == ["x", "y", "z", "intensity", "ring", "t"] and msg.point_step == 48
    msg = _wire(msg)
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg), p.astype(np.float32))  # float32 in, float32 out
    # the extra fields really are where the message says
    rec = np.frombuffer(bytes(msg.data), dtype=np.dtype({
        "names": ["intensity", "ring", "t"], "formats": ["<f4", "<u2", "<f8"],
        "offsets": [f.offset for f in msg.fields[3:]], "itemsize": 48}))
    np.testing.assert_array_equal(rec["intensity"], intensity)
    np.testing.assert_array_equal(rec["ring"], ring)
    np.testing.assert_array_equal(rec["t"], t)


def test_pointcloud_fields_in_unusual_order_hand_built():
    """z first, then an rgb field, then y, then x; 4 padding bytes; big-endian."""
    p = _points(10).astype(np.float32)
    data = b"".join(struct.pack(">fIff4x", z, 0xFF0000, y, x) for x, y, z in p)
    fields = [PointField(name="z", offset=0, datatype=PointField.FLOAT32, count=1),
              PointField(name="rgb", offset=4, datatype=PointField.UINT32, count=1),
              PointField(name="y", offset=8, datatype=PointField.FLOAT32, count=1),
              PointField(name="x", offset=12, datatype=PointField.FLOAT32, count=1)]
    msg = PointCloud2(height=1, width=10, fields=fields, is_bigendian=True, point_step=20,
                      row_step=200, data=data, is_dense=True)
    np.testing.assert_array_equal(pointcloud2_to_xyz(_wire(msg)), p)


def test_pointcloud_big_endian_and_float64():
    p = _points(40)
    be = _wire(xyz_to_pointcloud2(p, "m", big_endian=True))
    assert be.is_bigendian
    np.testing.assert_array_equal(pointcloud2_to_xyz(be), p.astype(np.float32))
    f64 = _wire(xyz_to_pointcloud2(p, "m", xyz_dtype=np.float64, big_endian=True,
                                   extra_fields={"intensity": np.ones(40, np.float32)}))
    assert {f.datatype for f in f64.fields[:3]} == {PointField.FLOAT64} and f64.point_step == 28
    np.testing.assert_array_equal(pointcloud2_to_xyz(f64), p)  # exact in float64


def test_pointcloud_integer_fields():
    p = RNG.integers(-1000, 1000, size=(20, 3)).astype(np.int16)
    data = p.astype("<i2").tobytes()
    fields = [PointField(name=c, offset=2 * i, datatype=PointField.INT16, count=1) for i, c in enumerate("xyz")]
    msg = PointCloud2(height=1, width=20, fields=fields, point_step=6, row_step=120, data=data)
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg), p.astype(np.float64))


def test_organized_cloud_with_row_padding_and_nans():
    grid = RNG.uniform(-3, 3, size=(4, 6, 3))
    grid[1, 2] = np.nan
    grid[3, 5, 2] = np.inf
    msg = xyz_to_pointcloud2(grid, "depth", row_step=6 * 12 + 8)
    assert (msg.height, msg.width, msg.row_step) == (4, 6, 80) and not msg.is_dense
    msg = _wire(msg)
    out = pointcloud2_to_xyz(msg)
    valid = np.isfinite(grid.reshape(-1, 3)).all(1)
    assert out.shape == (22, 3) and np.isfinite(out).all()
    np.testing.assert_array_equal(out, grid.reshape(-1, 3)[valid].astype(np.float32))
    full = pointcloud2_to_xyz(msg, keep_invalid=True)
    assert full.shape == (24, 3)
    np.testing.assert_array_equal(full.reshape(4, 6, 3), grid.astype(np.float32))


def test_empty_cloud():
    out = pointcloud2_to_xyz(_wire(xyz_to_pointcloud2(np.zeros((0, 3)), "m")))
    assert out.shape == (0, 3) and out.dtype == np.float64
    assert pointcloud2_to_xyz(PointCloud2()).shape == (0, 3)


def test_missing_z_field():
    fields = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
              PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
              PointField(name="intensity", offset=8, datatype=PointField.FLOAT32, count=1)]
    msg = PointCloud2(height=1, width=2, fields=fields, point_step=12, row_step=24, data=bytes(24))
    with pytest.raises(ConversionError) as exc:
        pointcloud2_to_xyz(msg)
    text = str(exc.value)
    assert "z" in text and "'intensity'" in text and "'x'" in text


def test_truncated_cloud_data():
    msg = xyz_to_pointcloud2(_points(10), "m")
    msg.data = msg.data[:100]
    with pytest.raises(ConversionError, match="bytes"):
        pointcloud2_to_xyz(msg)


def test_two_million_points_in_a_padded_layout():
    n = 2_000_000
    p = RNG.uniform(-50, 50, size=(n, 3)).astype(np.float32)
    # a typical lidar layout: x y z intensity(f4) ring(u2) + padding to 32 bytes
    msg = xyz_to_pointcloud2(p, "lidar", extra_fields={"intensity": np.ones(n, np.float32),
                                                       "ring": np.zeros(n, np.uint16)}, point_step=32)
    assert msg.point_step == 32 and msg.width * msg.height == n and len(msg.data) == 32 * n
    out = pointcloud2_to_xyz(msg)
    assert out.shape == (n, 3)
    np.testing.assert_array_equal(out, p)  # every point, bit for bit


# ----------------------------------------------------------------------------------------------
# Camera info, transforms, stamps
# ----------------------------------------------------------------------------------------------

def _camera_info(k, d=(), width=640, height=480):
    return CameraInfo(width=width, height=height, k=list(map(float, k)), d=list(map(float, d)),
                      distortion_model="plumb_bob")


def test_camera_info_to_camera(caplog):
    K = [525.0, 0, 319.5, 0, 525.0, 239.5, 0, 0, 1]
    msg = _wire(_camera_info(K, d=[0.0] * 5))
    cam = camera_info_to_camera(msg)
    assert (cam.width, cam.height) == (640, 480)
    np.testing.assert_array_equal(cam.K, np.array(K).reshape(3, 3))
    assert camera_info_distortion_note(msg) is None
    distorted = _camera_info(K, d=[0.1, -0.05, 0, 0, 0])
    note = camera_info_distortion_note(distorted)
    assert note is not None and "image_rect" in note
    with caplog.at_level("WARNING"):
        camera_info_to_camera(distorted)
    assert "image_rect" in caplog.text


def test_camera_info_invalid_intrinsics():
    with pytest.raises(ConversionError, match="no valid intrinsics: K = "):
        camera_info_to_camera(_camera_info([0.0] * 9))
    with pytest.raises(ConversionError, match="no valid intrinsics"):
        camera_info_to_camera(_camera_info([-5.0, 0, 1, 0, 5.0, 1, 0, 0, 1]))
    with pytest.raises(ConversionError, match="no valid intrinsics"):
        camera_info_to_camera(_camera_info([5.0, 0, 1, 0, 5.0, 1, 0, 0, 1], width=0, height=0))


def _random_rotation():
    q = RNG.normal(size=4)
    q /= np.linalg.norm(q)
    tf = Transform(rotation=Quaternion(x=q[0], y=q[1], z=q[2], w=q[3]))
    return transform_to_matrix(tf)[:3, :3], q


def test_transform_round_trip():
    for _ in range(50):
        R, q = _random_rotation()
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = RNG.normal(size=3)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        tf = _wire(matrix_to_transform(T))
        q2 = np.array([tf.rotation.x, tf.rotation.y, tf.rotation.z, tf.rotation.w])
        assert q2[3] >= 0
        np.testing.assert_allclose(np.abs(q2 @ q), 1.0, atol=1e-9)  # same rotation up to sign
        np.testing.assert_allclose(transform_to_matrix(tf), T, atol=1e-12)
    # ROS convention: (x, y, z, w) = (0, 0, sin 45deg, cos 45deg) is +90 deg about z
    tf = Transform(translation=Vector3(x=1.0, y=2.0, z=3.0),
                   rotation=Quaternion(x=0.0, y=0.0, z=np.sqrt(0.5), w=np.sqrt(0.5)))
    T = transform_to_matrix(tf)
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], [1, 2, 3])
    # identity and 180-degree rotations (the hard branches of the matrix->quaternion code)
    for R in (np.eye(3), np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])):
        T = np.eye(4)
        T[:3, :3] = R
        np.testing.assert_allclose(transform_to_matrix(matrix_to_transform(T)), T, atol=1e-12)
    with pytest.raises(ConversionError):
        transform_to_matrix(Transform(rotation=Quaternion(x=0.0, y=0.0, z=0.0, w=0.0)))
    with pytest.raises(ConversionError):
        matrix_to_transform(np.diag([1.0, 1.0, -1.0, 1.0]))


def test_stamps():
    assert stamp_to_seconds(Time(sec=10, nanosec=500_000_000)) == 10.5
    st = seconds_to_stamp(1_700_000_000.25)
    assert (st.sec, st.nanosec) == (1_700_000_000, 250_000_000)
    st = _wire(seconds_to_stamp(3.999999999999))  # rounds up into the next second
    assert (st.sec, st.nanosec) == (4, 0)
    st = seconds_to_stamp(-1.5)
    assert (st.sec, st.nanosec) == (-2, 500_000_000)
    assert stamp_to_seconds(st) == -1.5
    for t in (0.0, 1.0e-9, 12.345678912, 1_234_567.000001):
        assert stamp_to_seconds(seconds_to_stamp(t)) == pytest.approx(t, abs=1e-9)
    with pytest.raises(ValueError, match="non-finite"):
        seconds_to_stamp(float("nan"))
