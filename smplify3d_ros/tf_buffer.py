"""A TF buffer and listener of our own, for installs without ``tf2_ros`` (the PyPI ROS 2 wheels).

:class:`TfBuffer` (pure Python + numpy) keeps the transform tree that ``/tf`` and ``/tf_static``
describe: every frame has at most one parent, and each edge parent <- child holds either one
static transform (valid at every time) or a history of stamped ones, ``cache_time_s`` long
(10 s by default, as tf2's), counted back from that edge's newest stamp. A lookup
``T_target_source`` at a stamp walks from both frames up to their common ancestor, evaluates each
edge on the way at that one stamp (translation interpolated linearly, rotation by slerp between
the two neighbouring samples) and chains them. Without a stamp it uses the latest time at which
every dynamic edge of the chain has data (tf2's "latest common time").

Lookups that cannot be answered raise a :class:`TfLookupError` (a ``LookupError``) that names
both frames and why: :class:`FrameNotFoundError` (a frame nobody has published),
:class:`NotConnectedError` (two separate trees), :class:`ExtrapolationError` (a stamp outside an
edge's data, into the past or the future, with the range that is there). No value is ever
guessed: a stamp between two samples is interpolated, one outside them is an error.

Stamps go backwards when a bag loops or a simulation restarts: a dynamic transform older than its
edge's newest by more than ``jump_back_s`` (1 s) clears every dynamic edge (static ones stay) and
is reported once, by the return value of :meth:`TfBuffer.set_transform` (the listener logs it).

:class:`TfListener` subscribes to ``/tf`` (reliable, volatile, keep last 100) and ``/tf_static``
(reliable, transient local, keep last 100) with ``tf2_msgs/msg/TFMessage``, the QoS tf2_ros's
listener uses, and feeds a buffer. The buffer is thread-safe: the listener's callbacks run on the
executor thread while lookups (which may wait up to a timeout for data to arrive) run on another.

Conventions: ``T_a_b`` is a float64 (4, 4) rigid transform with ``p_a = T_a_b @ p_b`` (metres);
quaternions are ``(x, y, z, w)``; stamps are integer nanoseconds; frame ids lose a leading ``/``.
"""
from __future__ import annotations

import bisect
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from smplify3d_core.geometry.transforms import quaternion_to_matrix, rigid_inverse

__all__ = [
    "ExtrapolationError",
    "FrameNotFoundError",
    "NotConnectedError",
    "TfBuffer",
    "TfListener",
    "TfLookupError",
    "TfResult",
    "slerp",
]

NS_PER_S = 1_000_000_000
#: Longest parent chain followed before a lookup gives up (a loop in the published tree).
MAX_TREE_DEPTH = 1000


class TfLookupError(LookupError):
    """A transform ``target <- source`` is not available; ``str()`` says which and why."""

    def __init__(self, target: str, source: str, why: str):
        self.target, self.source, self.why = target, source, why
        super().__init__(f"no transform '{target}' <- '{source}': {why}")


class FrameNotFoundError(TfLookupError):
    """One of the two frames is in no transform received so far."""


class NotConnectedError(TfLookupError):
    """Both frames exist but in separate trees (no common ancestor)."""


class ExtrapolationError(TfLookupError):
    """The stamp lies outside the data of an edge of the chain.

    Attributes: ``direction`` ("past" or "future"), ``requested_ns``, ``available_ns`` (first,
    last stamp of that edge's data, ns), ``edge`` (parent, child).
    """

    def __init__(self, target: str, source: str, why: str, direction: str, requested_ns: int,
                 available_ns: Tuple[int, int], edge: Tuple[str, str]):
        self.direction, self.requested_ns, self.available_ns, self.edge = direction, requested_ns, available_ns, edge
        super().__init__(target, source, why)


class TfResult(NamedTuple):
    """A lookup's answer: ``matrix`` T_target_source (4, 4) float64 and ``stamp_ns``, the time it
    holds for (0 when every edge of the chain is static)."""

    matrix: np.ndarray
    stamp_ns: int


def slerp(q0: Sequence[float], q1: Sequence[float], fraction: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions ``(x, y, z, w)``: ``q0`` at 0, ``q1`` at 1.

    Takes the shorter arc (``q1`` and ``-q1`` are the same rotation); falls back to a normalised
    linear blend when the two are almost equal. Returns a (4,) float64 unit quaternion.
    """
    a = np.asarray(q0, dtype=np.float64)
    b = np.asarray(q1, dtype=np.float64)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    dot = float(a @ b)
    if dot < 0.0:
        b, dot = -b, -dot
    if dot > 0.9995:
        out = a + fraction * (b - a)
        return out / np.linalg.norm(out)
    theta = np.arccos(min(dot, 1.0))
    out = (np.sin((1.0 - fraction) * theta) * a + np.sin(fraction * theta) * b) / np.sin(theta)
    return out / np.linalg.norm(out)


def _seconds(ns: int) -> str:
    return f"{ns / NS_PER_S:.6f} s"


class _Edge:
    """The transforms parent <- child: one static sample, or a history sorted by stamp."""

    __slots__ = ("parent", "child", "static", "stamps", "translations", "rotations")

    def __init__(self, parent: str, child: str, static: bool):
        self.parent, self.child, self.static = parent, child, static
        self.stamps: List[int] = []
        self.translations: List[np.ndarray] = []  # (3,) metres
        self.rotations: List[np.ndarray] = []  # (4,) unit quaternions (x, y, z, w)

    def insert(self, stamp_ns: int, translation: np.ndarray, rotation: np.ndarray, cache_ns: int) -> None:
        if self.static:
            self.stamps, self.translations, self.rotations = [stamp_ns], [translation], [rotation]
            return
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:  # the same stamp again: the newer message wins
            self.translations[i], self.rotations[i] = translation, rotation
        else:
            self.stamps.insert(i, stamp_ns)
            self.translations.insert(i, translation)
            self.rotations.insert(i, rotation)
        first = bisect.bisect_left(self.stamps, self.stamps[-1] - cache_ns)  # older than the window: dropped
        if first:
            del self.stamps[:first], self.translations[:first], self.rotations[:first]

    def matrix_at(self, stamp_ns: int, target: str, source: str) -> np.ndarray:
        """T_parent_child (4, 4) at ``stamp_ns`` (any stamp for a static edge); raises ExtrapolationError."""
        if self.static:
            return _matrix(self.translations[0], self.rotations[0])
        stamps = self.stamps
        i = bisect.bisect_left(stamps, stamp_ns)
        if i < len(stamps) and stamps[i] == stamp_ns:
            return _matrix(self.translations[i], self.rotations[i])
        if i == 0 or i == len(stamps):
            direction = "past" if i == 0 else "future"
            have = (f"has one transform, at {_seconds(stamps[0])}" if len(stamps) == 1
                    else f"has data from {_seconds(stamps[0])} to {_seconds(stamps[-1])}")
            raise ExtrapolationError(
                target, source, f"extrapolation into the {direction}: requested {_seconds(stamp_ns)}, but "
                f"'{self.parent}' <- '{self.child}' {have}", direction, stamp_ns, (stamps[0], stamps[-1]),
                (self.parent, self.child))
        fraction = (stamp_ns - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
        translation = (1.0 - fraction) * self.translations[i - 1] + fraction * self.translations[i]
        return _matrix(translation, slerp(self.rotations[i - 1], self.rotations[i], fraction))


def _matrix(translation: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(*rotation)
    T[:3, 3] = translation
    return T


def _frame_id(name: Any) -> str:
    return str(name or "").lstrip("/")


class TfBuffer:
    """The transform tree of /tf and /tf_static; see the module docstring.

    Args:
        cache_time_s: how much history (s) each dynamic edge keeps, back from its newest stamp.
        jump_back_s: a dynamic transform older than its edge's newest by more than this (s)
            clears the dynamic history (a looping bag, a restarted simulation).
    """

    def __init__(self, cache_time_s: float = 10.0, jump_back_s: float = 1.0):
        if not cache_time_s > 0 or not jump_back_s > 0:
            raise ValueError(f"cache_time_s and jump_back_s must be > 0, got {cache_time_s}, {jump_back_s}")
        self.cache_time_s = float(cache_time_s)
        self.jump_back_s = float(jump_back_s)
        self._cache_ns = int(round(self.cache_time_s * NS_PER_S))
        self._jump_ns = int(round(self.jump_back_s * NS_PER_S))
        self._edges: Dict[str, _Edge] = {}  # child frame -> its edge to the parent
        self._changed = threading.Condition()
        #: how many times a backwards jump cleared the dynamic transforms
        self.jump_backs = 0

    # -- input ------------------------------------------------------------------------------------
    def set_transform(self, parent: str, child: str, translation: Sequence[float], rotation: Sequence[float],
                      stamp_ns: int, static: bool = False) -> Optional[str]:
        """Store ``T_parent_child`` given as ``translation`` (3,) metres and ``rotation`` (4,)
        quaternion (x, y, z, w; normalised here) at ``stamp_ns`` (ignored for a static one).

        A child that gets another parent, or changes between static and dynamic, starts a new
        edge. Returns None, or a one-line report when this transform's stamp jumped back and the
        dynamic history was cleared. Raises ValueError for empty or equal frame ids, a
        non-finite translation or a quaternion that cannot be normalised.
        """
        parent, child = _frame_id(parent), _frame_id(child)
        if not parent or not child or parent == child:
            raise ValueError(f"transform '{parent}' <- '{child}': frame ids must be non-empty and differ")
        t = np.asarray(translation, dtype=np.float64).reshape(3)
        q = np.asarray(rotation, dtype=np.float64).reshape(4)
        norm = float(np.linalg.norm(q))
        if not np.all(np.isfinite(t)) or not np.isfinite(norm) or norm < 1e-12:
            raise ValueError(f"transform '{parent}' <- '{child}': translation {t.tolist()} and rotation "
                             f"{q.tolist()} must be finite, the rotation a non-zero quaternion")
        q = q / norm
        stamp_ns = int(stamp_ns)
        report = None
        with self._changed:
            edge = self._edges.get(child)
            if (edge is not None and not static and not edge.static and edge.parent == parent and edge.stamps
                    and stamp_ns < edge.stamps[-1] - self._jump_ns):
                report = (f"TF stamps jumped back by {(edge.stamps[-1] - stamp_ns) / NS_PER_S:.3f} s on "
                          f"'{parent}' <- '{child}' ({_seconds(stamp_ns)} after {_seconds(edge.stamps[-1])}): "
                          "cleared the dynamic transforms (a looping bag or a restarted simulation?)")
                self._edges = {name: e for name, e in self._edges.items() if e.static}
                self.jump_backs += 1
                edge = None
            if edge is None or edge.parent != parent or edge.static != bool(static):
                edge = self._edges[child] = _Edge(parent, child, bool(static))
            edge.insert(stamp_ns, t, q, self._cache_ns)
            self._changed.notify_all()
        return report

    def clear(self) -> None:
        """Forget every transform, static ones included."""
        with self._changed:
            self._edges = {}

    # -- queries ----------------------------------------------------------------------------------
    def frames(self) -> List[str]:
        """Every frame id named by a stored transform, sorted."""
        with self._changed:
            return sorted(set(self._edges) | {edge.parent for edge in self._edges.values()})

    def lookup(self, target: str, source: str, stamp_ns: Optional[int] = None, timeout_s: float = 0.0) -> TfResult:
        """``T_target_source`` (p_target = T p_source) at ``stamp_ns`` (None: the latest common time).

        Waits up to ``timeout_s`` seconds for transforms that would answer it (new data wakes the
        wait). Raises FrameNotFoundError, NotConnectedError or ExtrapolationError (all
        TfLookupError) naming the frames and why.
        """
        target, source = _frame_id(target), _frame_id(source)
        deadline = time.monotonic() + max(0.0, float(timeout_s))
        with self._changed:
            while True:
                try:
                    return self._lookup_locked(target, source, stamp_ns)
                except TfLookupError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise
                    self._changed.wait(remaining)

    def can_transform(self, target: str, source: str, stamp_ns: Optional[int] = None) -> bool:
        """Whether :meth:`lookup` would answer now (no wait)."""
        try:
            self.lookup(target, source, stamp_ns)
        except TfLookupError:
            return False
        return True

    def _chain(self, frame: str, target: str, source: str) -> List[str]:
        """[frame, its parent, ..., the root] (the lock is held)."""
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
            if len(chain) > MAX_TREE_DEPTH:
                raise NotConnectedError(target, source, f"the tree above '{frame}' has a loop or is deeper than "
                                                        f"{MAX_TREE_DEPTH} frames")
        return chain

    def _lookup_locked(self, target: str, source: str, stamp_ns: Optional[int]) -> TfResult:
        if target == source:  # as tf2: the identity, whether or not the frame was ever published
            return TfResult(np.eye(4), 0 if stamp_ns is None else int(stamp_ns))
        known = set(self._edges) | {edge.parent for edge in self._edges.values()}
        for name, frame in (("target", target), ("source", source)):
            if frame not in known:
                listed = ", ".join(f"'{f}'" for f in sorted(known)[:12]) or "none yet"
                raise FrameNotFoundError(target, source, f"{name} frame '{frame}' does not exist (known frames: "
                                                         f"{listed}{', ...' if len(known) > 12 else ''})")
        up_target, up_source = self._chain(target, target, source), self._chain(source, target, source)
        on_target = set(up_target)
        common = next((frame for frame in up_source if frame in on_target), None)
        if common is None:
            raise NotConnectedError(target, source, f"not connected: '{target}' is in the tree of '{up_target[-1]}', "
                                                    f"'{source}' in the tree of '{up_source[-1]}'")
        source_edges = [self._edges[f] for f in up_source[:up_source.index(common)]]
        target_edges = [self._edges[f] for f in up_target[:up_target.index(common)]]
        dynamic = [e for e in source_edges + target_edges if not e.static]
        if stamp_ns is None:
            stamp_ns = min(e.stamps[-1] for e in dynamic) if dynamic else 0
        stamp_ns = int(stamp_ns)

        def down_from_common(edges: List[_Edge]) -> np.ndarray:  # T_common_frame through the chain
            T = np.eye(4)
            for edge in reversed(edges):
                T = T @ edge.matrix_at(stamp_ns, target, source)
            return T

        T_common_source = down_from_common(source_edges)
        T_common_target = down_from_common(target_edges)
        return TfResult(rigid_inverse(T_common_target) @ T_common_source, stamp_ns if dynamic else 0)


class TfListener:
    """Subscribes to ``/tf`` and ``/tf_static`` (tf2_msgs/msg/TFMessage) and fills a TfBuffer.

    Args:
        node: the rclpy node that owns the two subscriptions (its executor runs the callbacks).
        buffer: the TfBuffer to fill (default: a new one with a 10 s cache).
        callback_group: an rclpy callback group for the subscriptions (default: the node's).

    Transforms that cannot be stored (empty frame ids, NaN, a zero quaternion) are dropped with one
    warning per edge; a backwards jump of the stamps is logged once per jump.
    """

    #: depth of both subscriptions, as tf2_ros's listener
    QOS_DEPTH = 100

    def __init__(self, node: Any, buffer: Optional[TfBuffer] = None, callback_group: Any = None):
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from tf2_msgs.msg import TFMessage

        self.buffer = buffer if buffer is not None else TfBuffer()
        self._logger = node.get_logger()
        self._warned: set = set()

        def qos(durability):
            return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.QOS_DEPTH,
                              reliability=ReliabilityPolicy.RELIABLE, durability=durability)

        self._node = node
        self._subscriptions = [
            node.create_subscription(TFMessage, "/tf", lambda msg: self._on_message(msg, False),
                                     qos(DurabilityPolicy.VOLATILE), callback_group=callback_group),
            node.create_subscription(TFMessage, "/tf_static", lambda msg: self._on_message(msg, True),
                                     qos(DurabilityPolicy.TRANSIENT_LOCAL), callback_group=callback_group),
        ]

    def _on_message(self, msg: Any, static: bool) -> None:
        from smplify3d_ros.stamps import stamp_to_ns

        for item in msg.transforms:
            tr, q = item.transform.translation, item.transform.rotation
            try:
                report = self.buffer.set_transform(item.header.frame_id, item.child_frame_id, (tr.x, tr.y, tr.z),
                                                   (q.x, q.y, q.z, q.w), stamp_to_ns(item.header.stamp), static)
            except ValueError as error:
                key = (item.header.frame_id, item.child_frame_id)
                if key not in self._warned:
                    self._warned.add(key)
                    self._logger.warning(f"{'/tf_static' if static else '/tf'}: dropped {error}")
                continue
            if report:
                self._logger.warning(report)

    def destroy(self) -> None:
        """Remove the two subscriptions from the node."""
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions = []
