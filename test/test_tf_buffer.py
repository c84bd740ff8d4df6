"""The project's own TF buffer (smplify3d_ros.tf_buffer.TfBuffer): pure numpy, no ROS needed.

Interpolation and slerp between stamps, chains through several frames, static and dynamic edges
together, the errors for unknown frames, separate trees and stamps outside the data, the clear on
a backwards jump of the stamps, and concurrent writers and readers.
"""
import threading

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from smplify3d_ros.tf_buffer import (ExtrapolationError, FrameNotFoundError, NotConnectedError, TfBuffer,
                                     TfLookupError, slerp)

S = 1_000_000_000  # ns per second


def rigid(rotvec, translation):
    """(4, 4) T from a rotation vector (rad) and a translation (m)."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = translation
    return T


def put(buffer, parent, child, T, stamp_s=0.0, static=False):
    """Store T_parent_child; returns set_transform's report."""
    return buffer.set_transform(parent, child, T[:3, 3], Rotation.from_matrix(T[:3, :3]).as_quat(),
                                int(round(stamp_s * S)), static=static)


def test_interpolates_translation_linearly_and_rotation_by_slerp():
    buffer = TfBuffer()
    put(buffer, "base", "lidar", rigid([0, 0, 0.0], [0.0, 0.0, 0.0]), 10.0)
    put(buffer, "base", "lidar", rigid([0, 0, 1.0], [2.0, -4.0, 1.0]), 11.0)
    result = buffer.lookup("base", "lidar", int(10.25 * S))
    assert result.stamp_ns == int(10.25 * S)
    np.testing.assert_allclose(result.matrix, rigid([0, 0, 0.25], [0.5, -1.0, 0.25]), atol=1e-12)
    # exactly on a sample: that sample
    np.testing.assert_allclose(buffer.lookup("base", "lidar", 11 * S).matrix, rigid([0, 0, 1.0], [2.0, -4.0, 1.0]),
                               atol=1e-12)
    # the inverse direction
    np.testing.assert_allclose(buffer.lookup("lidar", "base", int(10.25 * S)).matrix,
                               np.linalg.inv(rigid([0, 0, 0.25], [0.5, -1.0, 0.25])), atol=1e-12)


def test_slerp_takes_the_short_arc_at_constant_speed():
    a = Rotation.from_rotvec([0.0, 0.0, 0.2]).as_quat()
    b = -Rotation.from_rotvec([0.0, 0.0, 1.4]).as_quat()  # the same rotation as +q
    for fraction in (0.0, 0.3, 0.5, 1.0):
        got = Rotation.from_quat(slerp(a, b, fraction)).as_rotvec()
        np.testing.assert_allclose(got, [0.0, 0.0, 0.2 + 1.2 * fraction], atol=1e-12)
    almost = Rotation.from_rotvec([0.0, 1e-9, 0.2]).as_quat()  # the linear fallback stays unit length
    assert abs(np.linalg.norm(slerp(a, almost, 0.5)) - 1.0) < 1e-12
    # a general axis, checked against scipy's Slerp
    from scipy.spatial.transform import Slerp

    ends = Rotation.from_rotvec([[0.3, -0.2, 0.1], [-1.0, 0.8, 0.5]])
    reference = Slerp([0.0, 1.0], ends)([0.7]).as_matrix()[0]
    np.testing.assert_allclose(Rotation.from_quat(slerp(*ends.as_quat(), 0.7)).as_matrix(), reference, atol=1e-12)


def test_chains_through_three_frames_up_to_the_common_ancestor():
    """camera_optical <- camera <- base -> lidar, and a sibling branch (base -> imu) not in the way."""
    buffer = TfBuffer()
    T_base_camera = rigid([0.1, 0.2, -0.3], [0.5, 0.0, 1.2])
    T_camera_optical = rigid([-np.pi / 2, 0.0, -np.pi / 2], [0.0, 0.0, 0.0])
    T_base_lidar = rigid([0.0, 0.05, 0.4], [0.2, 0.1, 1.5])
    put(buffer, "base", "camera", T_base_camera, static=True)
    put(buffer, "camera", "camera_optical", T_camera_optical, static=True)
    put(buffer, "base", "lidar", T_base_lidar, static=True)
    put(buffer, "base", "imu", rigid([1.0, 0, 0], [9, 9, 9]), static=True)
    expected = np.linalg.inv(T_base_camera @ T_camera_optical) @ T_base_lidar
    result = buffer.lookup("camera_optical", "lidar", 123 * S)
    np.testing.assert_allclose(result.matrix, expected, atol=1e-12)
    assert result.stamp_ns == 0  # static all the way
    np.testing.assert_allclose(buffer.lookup("/camera_optical", "/lidar").matrix, expected, atol=1e-12)  # leading /
    # one frame above the other: a plain chain
    np.testing.assert_allclose(buffer.lookup("base", "camera_optical").matrix, T_base_camera @ T_camera_optical,
                               atol=1e-12)
    assert buffer.frames() == ["base", "camera", "camera_optical", "imu", "lidar"]
    np.testing.assert_array_equal(buffer.lookup("nowhere", "nowhere").matrix, np.eye(4))  # as tf2


def test_static_and_dynamic_edges_together_and_the_latest_common_time():
    """map -> odom (dynamic, 10 Hz), odom -> base (dynamic, 5 Hz, ends earlier), base -> lidar (static)."""
    buffer = TfBuffer()
    T_base_lidar = rigid([0.0, 0.0, 0.3], [0.2, 0.0, 1.0])
    put(buffer, "base", "lidar", T_base_lidar, stamp_s=0.0, static=True)
    for k in range(11):  # 100.0 .. 101.0 s
        put(buffer, "map", "odom", rigid([0, 0, 0.1 * k], [k * 0.1, 0, 0]), 100.0 + 0.1 * k)
    for k in range(5):  # 100.0 .. 100.8 s
        put(buffer, "odom", "base", rigid([0, 0, 0], [0, k * 0.2, 0]), 100.0 + 0.2 * k)
    stamp = int(100.45 * S)
    expected = rigid([0, 0, 0.45], [0.45, 0, 0]) @ rigid([0, 0, 0], [0, 0.45, 0]) @ T_base_lidar
    np.testing.assert_allclose(buffer.lookup("map", "lidar", stamp).matrix, expected, atol=1e-9)
    latest = buffer.lookup("map", "lidar")  # the latest time every dynamic edge has: 100.8 s
    assert latest.stamp_ns == int(round(100.8 * S))
    np.testing.assert_allclose(latest.matrix, buffer.lookup("map", "lidar", latest.stamp_ns).matrix, atol=1e-12)
    # the static edge alone answers any stamp
    np.testing.assert_allclose(buffer.lookup("base", "lidar", 5 * S).matrix, T_base_lidar, atol=1e-12)
    # a static edge published again (e.g. a latched republish) replaces the old one
    put(buffer, "base", "lidar", np.eye(4), stamp_s=50.0, static=True)
    np.testing.assert_allclose(buffer.lookup("base", "lidar", 5 * S).matrix, np.eye(4), atol=1e-12)


def test_errors_name_the_frames_and_why():
    buffer = TfBuffer(cache_time_s=10.0)
    put(buffer, "base", "lidar", np.eye(4), 20.0)
    put(buffer, "base", "lidar", np.eye(4), 21.0)
    put(buffer, "odom", "robot2", np.eye(4), static=True)

    with pytest.raises(FrameNotFoundError) as error:
        buffer.lookup("camera_optical", "lidar", 20 * S)
    text = str(error.value)
    assert "'camera_optical' <- 'lidar'" in text and "target frame 'camera_optical' does not exist" in text
    assert "'base'" in text  # the frames that do exist
    assert isinstance(error.value, TfLookupError) and isinstance(error.value, LookupError)

    with pytest.raises(NotConnectedError) as error:
        buffer.lookup("robot2", "lidar", 20 * S)
    assert "not connected" in str(error.value) and "'odom'" in str(error.value) and "'base'" in str(error.value)

    with pytest.raises(ExtrapolationError) as error:
        buffer.lookup("base", "lidar", int(19.5 * S))
    e = error.value
    assert e.direction == "past" and e.available_ns == (20 * S, 21 * S) and e.edge == ("base", "lidar")
    assert "extrapolation into the past" in str(e) and "20.000000 s to 21.000000 s" in str(e)
    assert "requested 19.500000 s" in str(e)

    with pytest.raises(ExtrapolationError) as error:
        buffer.lookup("lidar", "base", int(21.01 * S))
    assert error.value.direction == "future" and "extrapolation into the future" in str(error.value)

    put(buffer, "base", "camera", np.eye(4), 30.0)  # one sample: only its own stamp
    with pytest.raises(ExtrapolationError, match="has one transform, at 30.000000 s"):
        buffer.lookup("base", "camera", int(30.1 * S))
    assert buffer.can_transform("base", "camera", 30 * S) and not buffer.can_transform("base", "camera", 29 * S)

    for bad in (("", "a", [0, 0, 0], [0, 0, 0, 1]), ("a", "a", [0, 0, 0], [0, 0, 0, 1]),
                ("a", "b", [np.nan, 0, 0], [0, 0, 0, 1]), ("a", "b", [0, 0, 0], [0, 0, 0, 0])):
        with pytest.raises(ValueError):
            buffer.set_transform(*bad, stamp_ns=0)


def test_history_is_kept_for_the_cache_window_only():
    buffer = TfBuffer(cache_time_s=2.0)
    for k in range(50):  # 0 .. 4.9 s at 10 Hz
        put(buffer, "base", "lidar", rigid([0, 0, 0], [k * 0.1, 0, 0]), 0.1 * k)
    np.testing.assert_allclose(buffer.lookup("base", "lidar", int(3.05 * S)).matrix[0, 3], 3.05, atol=1e-9)
    with pytest.raises(ExtrapolationError) as error:
        buffer.lookup("base", "lidar", int(2.5 * S))  # older than 4.9 - 2 s: dropped
    assert error.value.available_ns == (int(round(2.9 * S)), int(round(4.9 * S)))
    # a late sample inside the window is sorted in
    put(buffer, "base", "lidar", rigid([0, 0, 0], [100.0, 0, 0]), 4.05)
    assert buffer.lookup("base", "lidar", int(4.05 * S)).matrix[0, 3] == pytest.approx(100.0)


def test_a_backwards_jump_clears_the_dynamic_history_once():
    """A bag that loops: stamps restart 9 s earlier; the old history must not be interpolated into."""
    buffer = TfBuffer(jump_back_s=1.0)
    put(buffer, "camera", "base", np.eye(4), static=True)
    for k in range(10):
        assert put(buffer, "base", "lidar", rigid([0, 0, 0], [k, 0, 0]), 100.0 + k) is None
        assert put(buffer, "odom", "base_other", np.eye(4), 100.0 + k) is None
    assert put(buffer, "base", "lidar", rigid([0, 0, 0], [0, 0, 0]), 108.5) is None  # late, not a jump
    report = put(buffer, "base", "lidar", rigid([0, 0, 0], [-1.0, 0, 0]), 100.0)
    assert report is not None and "jumped back by 9.000 s" in report and "'base' <- 'lidar'" in report
    assert buffer.jump_backs == 1
    # the old samples are gone (an interpolation at 100.5 s would mix both runs)
    with pytest.raises(ExtrapolationError):
        buffer.lookup("base", "lidar", int(100.5 * S))
    np.testing.assert_allclose(buffer.lookup("base", "lidar", 100 * S).matrix[0, 3], -1.0, atol=1e-12)
    assert "odom" not in buffer.frames()  # every dynamic edge was cleared ...
    assert buffer.can_transform("camera", "base", 1 * S)  # ... the static ones stay
    # the other edges of the new run come in with old stamps too: no second report
    assert put(buffer, "odom", "base_other", np.eye(4), 100.0) is None
    for k in range(1, 5):
        assert put(buffer, "base", "lidar", np.eye(4), 100.0 + k) is None
    assert buffer.jump_backs == 1


def test_lookup_waits_for_the_transform_up_to_its_timeout():
    import time

    buffer = TfBuffer()
    put(buffer, "base", "lidar", np.eye(4), 1.0)
    threading.Timer(0.1, lambda: put(buffer, "base", "lidar", rigid([0, 0, 0], [1.0, 0, 0]), 2.0)).start()
    started = time.monotonic()
    result = buffer.lookup("base", "lidar", int(1.5 * S), timeout_s=30.0)  # woken by the new sample
    assert time.monotonic() - started < 25.0
    assert result.matrix[0, 3] == pytest.approx(0.5)
    with pytest.raises(ExtrapolationError):
        buffer.lookup("base", "lidar", 3 * S, timeout_s=0.05)


def test_concurrent_writers_and_readers():
    """A /tf writer at full speed, a second writer on another edge and three readers: every answer
    is a rigid transform consistent with the data, every failure a TfLookupError."""
    buffer = TfBuffer(cache_time_s=1.0)
    put(buffer, "base", "camera", rigid([0.1, 0, 0], [0, 0, 1]), static=True)
    stop = threading.Event()
    errors, answers = [], []

    def writer(child, n):
        try:
            for k in range(n):
                angle = 0.001 * k
                put(buffer, "base", child, rigid([0, 0, angle], [0.001 * k, 0, 0]), 0.001 * k)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    def reader():
        while not stop.is_set():
            try:
                result = buffer.lookup("camera", "lidar", None, timeout_s=0.01)
                R = result.matrix[:3, :3]
                assert np.allclose(R.T @ R, np.eye(3), atol=1e-9)
                answers.append(result.stamp_ns)
                buffer.lookup("lidar", "imu", None)
            except TfLookupError:
                pass
            except Exception as error:  # pragma: no cover - reported below
                errors.append(error)

    readers = [threading.Thread(target=reader) for _ in range(3)]
    writers = [threading.Thread(target=writer, args=("lidar", 3000)), threading.Thread(target=writer, args=("imu", 3000))]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    assert not errors, errors[:3]
    assert answers
    final = buffer.lookup("base", "lidar")
    assert final.stamp_ns == 2_999_000_000
    np.testing.assert_allclose(final.matrix, rigid([0, 0, 2.999], [2.999, 0, 0]), atol=1e-9)


def test_a_strict_lookup_never_stands_an_older_transform_in_for_the_stamped_one():
    """A moving frame (odom <- camera) must be known at the image's stamp; the extrinsics' fallback to the
    latest transform would place the bodies where the robot was."""
    from smplify3d_ros.extrinsics import ExtrinsicsSource

    buffer = TfBuffer()
    put(buffer, "odom", "camera", rigid([0, 0, 0], [0.5, 0, 0]), 1.0)
    source = ExtrinsicsSource(buffer=buffer, timeout_s=0.01)
    T, why = source.get(2.0, camera_frame="odom", lidar_frame="camera")
    assert T is not None and why.startswith("tf latest")
    T, why = source.get(2.0, camera_frame="odom", lidar_frame="camera", strict=True)
    assert T is None and "odom <- camera at the image's stamp" in why
    T, why = source.get(1.0, camera_frame="odom", lidar_frame="camera", strict=True)
    assert why == "tf" and T[0, 3] == pytest.approx(0.5)
