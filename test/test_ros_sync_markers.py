"""Synchronizer, extrinsics and RViz marker helpers of the ROS layer (fast, no DDS discovery
except one in-process pub/sub check)."""
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")  # import early: the ROS wheels re-exec to set library paths

from smplify3d_ros.conversions import transform_to_matrix  # noqa: E402
from smplify3d_ros.extrinsics import (  # noqa: E402
    ExtrinsicsConfigError, ExtrinsicsSource, parse_static_matrix, tf2_available)
from smplify3d_ros.markers import (  # noqa: E402
    delete_all, markers_for_persons, mesh_marker, points_from_array, track_color)
from smplify3d_ros.sync import (  # noqa: E402
    ApproximateSynchronizer, make_synchronizer, message_filters_available)

from ros_processes import ros_domain_id  # noqa: E402


class Collector:
    def __init__(self):
        self.sets = []

    def __call__(self, *msgs):
        self.sets.append(msgs)


def feed(sync, events):
    """events: (input, stamp) in arrival order; the message is the tuple itself."""
    for i, s in events:
        sync.add(i, (i, s), s)


# ---------------------------------------------------------------------------------------------
# ApproximateSynchronizer
# ---------------------------------------------------------------------------------------------

def test_pairs_within_slop():
    c = Collector()
    sync = ApproximateSynchronizer(2, 10, 0.02, c)
    feed(sync, [(0, 1.000), (1, 1.015), (0, 1.100), (1, 1.090), (1, 1.200), (0, 1.210)])
    assert [tuple(m[1] for m in s) for s in c.sets] == [(1.000, 1.015), (1.100, 1.090),
                                                        (1.210, 1.200)]
    assert sync.unsynchronized_drops == 0
    assert sync.stats()["queued"] == [0, 0]


def test_exactly_slop_is_inside_and_beyond_is_not():
    c = Collector()
    sync = ApproximateSynchronizer(2, 10, 0.05, c)
    feed(sync, [(0, 10.0), (1, 10.05)])
    assert len(c.sets) == 1
    feed(sync, [(0, 11.0), (1, 11.0501)])
    assert len(c.sets) == 1


def test_offset_topics_never_synchronize_and_drops_grow():
    c = Collector()
    q = 5
    sync = ApproximateSynchronizer(2, q, 0.1, c)
    drops = []
    for k in range(50):
        sync.add(0, ("a", k), k * 1.0)
        sync.add(1, ("b", k), k * 1.0 + 0.5)  # offset 0.5 s >> slop 0.1 s
        drops.append(sync.unsynchronized_drops)
    assert c.sets == []
    assert drops[-1] == 2 * 50 - 2 * q  # everything but the bounded queues was discarded
    assert all(b >= a for a, b in zip(drops, drops[1:])) and drops[-1] > drops[10]
    st = sync.stats()
    assert st["queued"] == [q, q] and st["sets_emitted"] == 0


def test_out_of_order_arrival():
    c = Collector()
    sync = ApproximateSynchronizer(2, 10, 0.02, c)
    feed(sync, [(0, 2.10), (0, 2.00), (1, 2.01)])  # input 0 arrives out of order
    assert [tuple(m[1] for m in s) for s in c.sets] == [(2.00, 2.01)]
    feed(sync, [(1, 2.11)])
    assert [tuple(m[1] for m in s) for s in c.sets][-1] == (2.10, 2.11)
    # A message older than what its input already delivered can never be used: dropped.
    feed(sync, [(1, 1.95)])
    assert sync.unsynchronized_drops == 1
    assert len(c.sets) == 2


def test_one_future_stamp_does_not_block_the_stream():
    """A pair stamped a year ahead (a bad sensor clock) is emitted; the next normal stamps are a jump
    back in time: the synchronizer clears its queues, reports the jump and goes on pairing."""
    c, jumps = Collector(), []
    sync = ApproximateSynchronizer(2, 10, 0.02, c, jump_listener=lambda i, newest, stamp: jumps.append((i, newest, stamp)))
    year = 365 * 24 * 3600.0
    feed(sync, [(0, 100.0), (1, 100.01), (0, 100.0 + year), (1, 100.0 + year)])
    assert len(c.sets) == 2
    feed(sync, [(0, 100.1), (1, 100.11), (0, 100.2), (1, 100.2)])
    assert [tuple(m[1] for m in s) for s in c.sets[2:]] == [(100.1, 100.11), (100.2, 100.2)]
    assert [j[0] for j in jumps] == [0] and sync.stats()["time_jumps"] == 1  # one jump, seen first on input 0
    assert jumps[0][1] - jumps[0][2] == pytest.approx(year * 1e9 - 0.1e9, rel=1e-9)


def test_count_drop_keeps_the_books():
    """A message turned away before add (e.g. a future stamp) is received and dropped under its reason."""
    drops = []
    sync = ApproximateSynchronizer(2, 5, 0.02, Collector(), drop_listener=lambda i, reason: drops.append((i, reason)))
    sync.count_drop(1, "future_stamp")
    st = sync.stats()
    assert st["received"] == [0, 1] and st["drops_by_reason"]["future_stamp"] == 1 and drops == [(1, "future_stamp")]


def test_looping_bag_restarts_synchronization():
    """Stamps 0..2 s, then 0..2 s again (a bag played with --loop): every pair of both loops is emitted."""
    c = Collector()
    sync = ApproximateSynchronizer(2, 10, 0.02, c)
    for _ in range(2):
        feed(sync, [e for k in range(1, 21) for e in ((0, 0.1 * k), (1, 0.1 * k + 0.005))])
    assert len(c.sets) == 40
    assert sync.stats()["time_jumps"] == 1 and sync.unsynchronized_drops == 0


def test_lonely_future_message_is_forgotten_after_the_jump():
    """An image alone stamped in the future sits in its queue; the next normal image is a jump on
    that input, which drops it (reason 'time_jump')."""
    c, drops = Collector(), []
    sync = ApproximateSynchronizer(2, 10, 0.02, c, drop_listener=lambda i, reason: drops.append((i, reason)))
    feed(sync, [(0, 5000.0), (0, 10.0), (1, 10.0)])
    assert len(c.sets) == 1 and sync.stats()["queued"] == [0, 0]
    assert drops == [(0, "time_jump")]


def test_drop_reasons_are_counted_and_reported():
    """Duplicate / out-of-order stamps are 'late', zero stamps 'zero_stamp', messages without a partner
    within the slop 'unmatched', older ones passed over by a set 'superseded'."""
    c, drops = Collector(), []
    sync = ApproximateSynchronizer(2, 2, 0.02, c, drop_listener=lambda i, reason: drops.append((i, reason)))
    feed(sync, [(0, 1.0), (1, 1.0)])  # a set
    feed(sync, [(0, 1.0), (0, 0.9)])  # duplicate, out of order
    feed(sync, [(0, 0.0)])  # unset stamp
    feed(sync, [(0, 2.0), (0, 2.1), (0, 2.2)])  # no cloud: the queue of 2 overflows once
    feed(sync, [(1, 2.2)])  # pairs with 2.2; 2.1 is passed over
    by_reason = sync.stats()["drops_by_reason"]
    assert {k: v for k, v in by_reason.items() if v} == {"late": 2, "zero_stamp": 1, "unmatched": 1, "superseded": 1}
    assert sorted(r for _, r in drops) == sorted(["late", "late", "zero_stamp", "unmatched", "superseded"])
    assert sync.unsynchronized_drops == 5


def test_queue_overflow_drops_oldest():
    c = Collector()
    sync = ApproximateSynchronizer(2, 3, 0.02, c)
    for k in range(5):
        sync.add(0, ("a", k), 1.0 + 0.1 * k)
    assert sync.stats()["queued"] == [3, 0]
    assert sync.unsynchronized_drops == 2
    sync.add(1, ("b", 0), 1.0)  # its partner (k=0) was pushed out of the queue
    assert c.sets == []
    sync.add(1, ("b", 4), 1.4)  # pairs with the newest; older queued ones are dropped
    assert [(s[0][1], s[1][1]) for s in c.sets] == [(4, 4)]
    st = sync.stats()
    assert st["queued"] == [0, 0]
    assert st["unsynchronized_drops"] == [4, 1]
    assert sum(st["received"]) == 2 * st["sets_emitted"] + st["unsynchronized_drops_total"]


def test_earliest_pivot_with_smallest_spread():
    c = Collector()
    sync = ApproximateSynchronizer(2, 10, 0.05, c)
    feed(sync, [(0, 1.00), (0, 1.03), (1, 1.04)])
    # Both 1.00 and 1.03 are within slop of 1.04; the set with the smallest spread wins and the
    # older message of input 0 is dropped (older than the emitted set).
    assert [tuple(m[1] for m in s) for s in c.sets] == [(1.03, 1.04)]
    assert sync.unsynchronized_drops == 1


def test_hand_worked_three_inputs():
    """slop 50 ms. Arrival order = stamp order.

    in0: 1.00 1.10 1.20 | in1: 1.02 1.13 1.19 | in2: 0.99 1.04 1.16 1.21
    - after 1.02 arrives: pivot 1.02 -> {1.00, 1.02, 0.99} spread 30 ms -> set 1
    - 1.04, 1.10, 1.13: pivot 1.13 -> {1.10, 1.13, 1.04} spread 90 ms: no set
    - 1.16: pivot 1.16 -> {1.10, 1.13, 1.16} spread 60 ms: no set
    - 1.19: pivot 1.19 -> {1.10, 1.19, 1.16} spread 90 ms: no set
    - 1.20: pivot 1.20 -> {1.20, 1.19, 1.16} spread 40 ms -> set 2; 1.10, 1.13, 1.04 dropped
    - 1.21 waits in in2's queue.
    """
    c = Collector()
    sync = ApproximateSynchronizer(3, 10, 0.05, c)
    events = sorted([(0, 1.00), (0, 1.10), (0, 1.20), (1, 1.02), (1, 1.13), (1, 1.19),
                     (2, 0.99), (2, 1.04), (2, 1.16), (2, 1.21)], key=lambda e: e[1])
    emitted_after = []
    for i, s in events:
        sync.add(i, (i, s), s)
        emitted_after.append(len(c.sets))
    assert [tuple(m[1] for m in s) for s in c.sets] == [(1.00, 1.02, 0.99), (1.20, 1.19, 1.16)]
    assert [tuple(m[0] for m in s) for s in c.sets] == [(0, 1, 2), (0, 1, 2)]
    assert emitted_after == [0, 0, 1, 1, 1, 1, 1, 1, 2, 2]
    st = sync.stats()
    assert st["unsynchronized_drops"] == [1, 1, 1]
    assert st["queued"] == [0, 0, 1]


def test_thread_safety_two_producers():
    n = 3000
    got = []
    lock = threading.Lock()

    def cb(a, b):
        with lock:
            got.append((a, b))

    sync = ApproximateSynchronizer(2, n + 1, 0.01, cb)
    barrier = threading.Barrier(2)

    def producer(i):
        barrier.wait()
        for k in range(n):
            sync.add(i, (i, k), 100.0 + 0.1 * k)

    threads = [threading.Thread(target=producer, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)  # only stops the wait: a deadlock never ends
    assert not any(t.is_alive() for t in threads), "a producer never finished (deadlock?)"
    assert len(got) == n
    assert all(a[1] == b[1] for a, b in got)
    assert sorted(a[1] for a, _ in got) == list(range(n))
    assert sync.unsynchronized_drops == 0


def test_headerless_rejected_and_validation():
    sync = ApproximateSynchronizer(2, 5, 0.1)
    with pytest.raises(ValueError, match="header"):
        sync.add_msg(0, object())
    with pytest.raises(IndexError):
        sync.add(2, "x", 0.0)
    with pytest.raises(ValueError):
        ApproximateSynchronizer(0, 5, 0.1)
    with pytest.raises(ValueError):
        ApproximateSynchronizer(2, 0, 0.1)


def test_add_msg_uses_header_stamp():
    from sensor_msgs.msg import Image, PointCloud2

    c = Collector()
    sync = ApproximateSynchronizer(2, 5, 0.01, c)
    img, pc = Image(), PointCloud2()
    img.header.stamp.sec, img.header.stamp.nanosec = 1_700_000_000, 5
    pc.header.stamp.sec, pc.header.stamp.nanosec = 1_700_000_000, 9_000_005
    sync.add_msg(0, img)
    sync.add_msg(1, pc)
    assert len(c.sets) == 1 and c.sets[0][0] is img and c.sets[0][1] is pc


def test_make_synchronizer_builtin_pub_sub(monkeypatch):
    """In-process graph: the built-in path (or message_filters where installed) pairs an Image
    and a PointCloud2 with nearby stamps."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, PointCloud2

    # a DDS domain of its own, loopback discovery only (read by rclpy.init)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain_id(3))
    node = rclpy.create_node("test_sync_node", context=context)
    try:
        got = []
        handle = make_synchronizer(
            node, [(Image, "/sync_test/image"), (PointCloud2, "/sync_test/points")],
            queue_size=5, slop=0.05, callback=lambda a, b: got.append((a, b)))
        assert handle.backend == ("message_filters" if message_filters_available() else "builtin")
        p_img = node.create_publisher(Image, "/sync_test/image", qos_profile_sensor_data)
        p_pc = node.create_publisher(PointCloud2, "/sync_test/points", qos_profile_sensor_data)
        ex = SingleThreadedExecutor(context=context)
        ex.add_node(node)
        deadline = time.monotonic() + 60.0  # only stops the wait; a pair normally arrives within a second
        k = 0
        while not got and time.monotonic() < deadline:
            img, pc = Image(), PointCloud2()
            img.header.stamp.sec = pc.header.stamp.sec = 100 + k
            pc.header.stamp.nanosec = 20_000_000  # 20 ms later
            img.header.frame_id, pc.header.frame_id = "cam", "lidar"
            p_img.publish(img)
            p_pc.publish(pc)
            k += 1
            ex.spin_once(timeout_sec=0.1)
        for _ in range(5):
            ex.spin_once(timeout_sec=0.02)
        assert got, f"no synchronized set from {k} published pairs (waited 60 s)"
        a, b = got[0]
        assert a.header.frame_id == "cam" and b.header.frame_id == "lidar"
        assert a.header.stamp.sec == b.header.stamp.sec
        assert handle.stats()["backend"] == handle.backend
        ex.remove_node(node)
        ex.shutdown()
        handle.destroy(node)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


# ---------------------------------------------------------------------------------------------
# Extrinsics
# ---------------------------------------------------------------------------------------------

def _rigid(yaw=0.3, t=(0.1, -0.2, 0.5)):
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[:3, 3] = t
    return T


def test_parse_static_matrix_ok_and_projects_rounding():
    T = _rigid()
    out = parse_static_matrix(np.round(T, 6).reshape(-1).tolist())
    assert out.shape == (4, 4)
    np.testing.assert_allclose(out, T, atol=1e-5)
    np.testing.assert_allclose(out[:3, :3].T @ out[:3, :3], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(parse_static_matrix(T), T, atol=1e-12)  # a 4x4 is accepted too


@pytest.mark.parametrize("values, match", [
    ([1.0] * 15, "16 numbers"),
    ([], "16 numbers"),
    (None, "no value"),
    (["a"] * 16, "16 numbers"),
    ([float("nan")] + _rigid().reshape(-1).tolist()[1:], "not finite"),
    (np.eye(4).reshape(-1).tolist()[:12] + [0, 0, 1, 1], "last row"),
    ((np.diag([2.0, 2.0, 2.0, 1.0])).reshape(-1).tolist(), "not a rotation"),
    ((np.diag([1.0, 1.0, -1.0, 1.0])).reshape(-1).tolist(), "reflection"),
])
def test_parse_static_matrix_errors(values, match):
    with pytest.raises(ValueError, match=match):
        parse_static_matrix(values)


def test_extrinsics_static_path():
    T = _rigid()
    src = ExtrinsicsSource(None, "cam", "lidar", static_matrix=T.reshape(-1).tolist())
    assert src.mode == "static"
    got, reason = src.get(None)
    assert reason == "static"
    np.testing.assert_allclose(got, T, atol=1e-12)
    got[0, 0] = 99.0  # the caller's copy; the source is unchanged
    np.testing.assert_allclose(src.get(12.5)[0], T, atol=1e-12)
    assert "static" in src.describe()


def test_extrinsics_tf_without_a_node_or_backend_is_a_clear_startup_error():
    """TF mode needs a node to subscribe with; there is no fallback to a guessed (identity) matrix."""
    for empty in (None, []):
        with pytest.raises(ExtrinsicsConfigError) as e:
            ExtrinsicsSource(None, "cam", "lidar", static_matrix=empty)
        assert "T_cam_lidar" in str(e.value) and "/tf" in str(e.value)
    if not tf2_available():
        with pytest.raises(ExtrinsicsConfigError, match="tf2_ros is not installed"):
            ExtrinsicsSource(object(), "cam", "lidar", tf_backend="tf2_ros")
    with pytest.raises(ExtrinsicsConfigError, match="tf_backend"):
        ExtrinsicsSource(object(), "cam", "lidar", tf_backend="guess")


def test_extrinsics_on_the_builtin_buffer_use_the_latest_only_within_the_window():
    from smplify3d_ros.tf_buffer import TfBuffer

    T = _rigid(0.4, (0.1, -0.2, 0.3))
    t, q = T[:3, 3], _transform_msg(T).transform.rotation
    buffer = TfBuffer(cache_time_s=10.0)
    src = ExtrinsicsSource(None, "cam", "lidar", buffer=buffer, timeout_s=0.0, cache_time_s=10.0)
    assert src.backend == "builtin" and "built-in" in src.describe()
    got, reason = src.get(100.0)
    assert got is None and reason.startswith("TF missing: cam <- lidar") and "does not exist" in reason
    for stamp in (100.0, 101.0):
        buffer.set_transform("cam", "lidar", t, (q.x, q.y, q.z, q.w), int(stamp * 1e9))
    got, reason = src.get(100.5)
    assert reason == "tf"
    np.testing.assert_allclose(got, T, atol=1e-9)
    got, reason = src.get(103.0)  # after the newest, within 10 s: the latest
    assert reason.startswith("tf latest") and "extrapolation into the future" in reason
    np.testing.assert_allclose(got, T, atol=1e-9)
    got, reason = src.get(130.0)  # 29 s after the newest: skipped, not guessed
    assert got is None and reason.startswith("TF missing: cam <- lidar") and "beyond the 10 s window" in reason
    got, reason = src.get(None)
    assert reason == "tf latest"
    buffer.set_transform("cam", "lidar", t, (q.x, q.y, q.z, q.w), 0, static=True)  # a static chain: any stamp
    assert src.get(5000.0)[1] == "tf"


def _transform_msg(T):
    from geometry_msgs.msg import TransformStamped

    from scipy.spatial.transform import Rotation

    msg = TransformStamped()
    x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
    msg.transform.rotation.x, msg.transform.rotation.y = float(x), float(y)
    msg.transform.rotation.z, msg.transform.rotation.w = float(z), float(w)
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = \
        (float(v) for v in T[:3, 3])
    return msg


class FakeBuffer:
    """tf2_ros.Buffer stand-in: a stamped transform (optional) and a latest one (optional)."""

    def __init__(self, stamped=None, latest=None):
        self.stamped, self.latest, self.calls = stamped, latest, []

    def lookup_transform(self, target, source, time, timeout=None):
        self.calls.append((target, source, time.nanoseconds))
        tf = self.latest if time.nanoseconds == 0 else self.stamped
        if tf is None:
            raise LookupError(f"{target} <- {source} not available")
        return tf


def test_extrinsics_tf_path_with_injected_buffer():
    from builtin_interfaces.msg import Time

    T = _rigid(0.7, (1.0, 2.0, 3.0))
    np.testing.assert_allclose(transform_to_matrix(_transform_msg(T).transform), T, atol=1e-9)

    buf = FakeBuffer(stamped=_transform_msg(T))
    src = ExtrinsicsSource(None, "cam", "lidar", buffer=buf)
    got, reason = src.get(Time(sec=5, nanosec=7))
    assert reason == "tf" and buf.calls[0] == ("cam", "lidar", 5_000_000_007)
    np.testing.assert_allclose(got, T, atol=1e-9)

    buf = FakeBuffer(latest=_transform_msg(T))  # stamped missing -> latest
    got, reason = ExtrinsicsSource(None, "cam", "lidar", buffer=buf).get(5.0)
    assert reason.startswith("tf latest") and "LookupError" in reason
    np.testing.assert_allclose(got, T, atol=1e-9)

    buf = FakeBuffer()  # nothing at all: None + reason, no exception
    got, reason = ExtrinsicsSource(None, "cam", "lidar", buffer=buf).get(5.0)
    assert got is None and reason.startswith("TF missing") and "cam <- lidar" in reason

    got, reason = ExtrinsicsSource(None, "", "", buffer=FakeBuffer()).get(1.0)
    assert got is None and "frame names" in reason
    got, reason = ExtrinsicsSource(None, "", "", buffer=FakeBuffer(stamped=_transform_msg(T))).get(
        1.0, camera_frame="cam_optical", lidar_frame="os_lidar")
    assert reason == "tf"


# ---------------------------------------------------------------------------------------------
# Markers
# ---------------------------------------------------------------------------------------------

def _mesh(V=50, F=80, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(V, 3)), rng.integers(0, V, size=(F, 3))


def test_mesh_marker_fields_and_points():
    from builtin_interfaces.msg import Time
    from visualization_msgs.msg import Marker

    v, f = _mesh()
    m = mesh_marker(v, f, "cam", Time(sec=3, nanosec=4), 7, (0.1, 0.2, 0.3, 0.4))
    assert m.type == Marker.TRIANGLE_LIST and m.action == Marker.ADD
    assert m.ns == "smplify3d" and m.id == 7 and m.header.frame_id == "cam"
    assert (m.header.stamp.sec, m.header.stamp.nanosec) == (3, 4)
    assert (m.scale.x, m.scale.y, m.scale.z) == (1.0, 1.0, 1.0)
    assert (m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z,
            m.pose.orientation.w) == (0.0, 0.0, 0.0, 1.0)
    assert len(m.points) == 3 * len(f)
    pts = np.array([[p.x, p.y, p.z] for p in m.points])
    np.testing.assert_array_equal(pts, v[f.reshape(-1)])
    assert abs(m.color.a - 0.4) < 1e-6 and abs(m.color.r - 0.1) < 1e-6


def test_fast_points_equal_constructor_points():
    from geometry_msgs.msg import Point

    arr = np.random.default_rng(1).normal(size=(20, 3))
    fast = points_from_array(arr)
    slow = [Point(x=x, y=y, z=z) for x, y, z in arr.tolist()]
    assert fast == slow
    assert repr(fast[0]) == repr(slow[0])


def test_markers_for_persons_colours_and_stale_deletes():
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker, MarkerArray

    v, f = _mesh()
    header = Header(frame_id="camera_optical")
    header.stamp.sec = 10
    arr1, ids1 = markers_for_persons([v, v + 1.0, v - 1.0], f, [3, 11, 42], header, set())
    assert ids1 == {3, 11, 42}
    assert [m.id for m in arr1.markers] == [3, 11, 42]
    assert all(len(m.points) == 3 * len(f) for m in arr1.markers)
    colours1 = {m.id: (m.color.r, m.color.g, m.color.b) for m in arr1.markers}
    assert len(set(colours1.values())) == 3

    # Next frame: track 11 left, 5 appeared; 3 and 42 keep their colours.
    arr2, ids2 = markers_for_persons([v, v, v], f, [42, 5, 3], header, ids1)
    assert ids2 == {42, 5, 3}
    adds = [m for m in arr2.markers if m.action == Marker.ADD]
    dels = [m for m in arr2.markers if m.action == Marker.DELETE]
    assert [m.id for m in adds] == [42, 5, 3]
    assert [(m.id, m.ns) for m in dels] == [(11, "smplify3d")]
    assert dels[0].header.frame_id == "camera_optical"
    colours2 = {m.id: (m.color.r, m.color.g, m.color.b) for m in adds}
    assert colours2[42] == colours1[42] and colours2[3] == colours1[3]
    assert track_color(42) == track_color(42) and track_color(3) != track_color(4)

    # Serialization round trip of the whole array.
    raw = serialize_message(arr2)
    back = deserialize_message(raw, MarkerArray)
    assert len(back.markers) == 4 and len(back.markers[0].points) == 3 * len(f)
    assert back.markers[0].points[5].x == arr2.markers[0].points[5].x

    arr3, ids3 = markers_for_persons([], f, [], header, ids2)
    assert ids3 == set() and sorted(m.id for m in arr3.markers) == [3, 5, 42]
    assert all(m.action == Marker.DELETE for m in arr3.markers)

    arr4, ids4 = markers_for_persons([v, v], f, None, header, None)
    assert ids4 == {0, 1}
    with pytest.raises(ValueError):
        markers_for_persons([v, v], f, [1, 1], header, None)


def test_delete_all():
    from rclpy.serialization import serialize_message
    from visualization_msgs.msg import Marker

    arr = delete_all("cam")
    assert len(arr.markers) == 1
    assert arr.markers[0].action == Marker.DELETEALL and arr.markers[0].header.frame_id == "cam"
    assert len(serialize_message(arr)) > 0


def test_markers_for_four_smpl_sized_persons():
    """4 SMPL-sized meshes (6890 vertices, 13776 faces each) -> 4 markers of 41328 points each, face by
    face, that survive a CDR round trip."""
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker, MarkerArray

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 6890, size=(13776, 3))
    verts = [rng.normal(size=(6890, 3)) for _ in range(4)]
    header = Header(frame_id="cam")
    t0 = time.perf_counter()
    arr, ids = markers_for_persons(verts, faces, [0, 1, 2, 3], header, set())
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    raw = serialize_message(arr)
    ser = time.perf_counter() - t0
    print(f"\nmarkers for 4 persons: build {build * 1e3:.1f} ms, serialize {ser * 1e3:.1f} ms, "
          f"{len(raw) / 1e6:.1f} MB")  # for information only: timings depend on the machine
    assert ids == {0, 1, 2, 3}
    assert [m.id for m in arr.markers] == [0, 1, 2, 3]
    assert all(m.type == Marker.TRIANGLE_LIST and len(m.points) == 3 * 13776 for m in arr.markers)
    last = arr.markers[3].points[-1]
    np.testing.assert_array_equal([last.x, last.y, last.z], verts[3][faces[-1, 2]])
    back = deserialize_message(raw, MarkerArray)
    assert sum(len(m.points) for m in back.markers) == 4 * 3 * 13776


def test_gc_state_restored_after_marker_build():
    import gc

    v, f = _mesh()
    assert gc.isenabled()
    mesh_marker(v, f, "cam", None, 0)
    assert gc.isenabled()
    gc.disable()
    try:
        points_from_array(v)
        assert not gc.isenabled()  # someone else's choice is left alone
    finally:
        gc.enable()
