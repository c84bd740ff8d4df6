"""Approximate-time synchronization of several sensor streams (camera image, LiDAR cloud, ...).

`ApproximateSynchronizer` is a pure-Python equivalent of ``message_filters``'
``ApproximateTimeSynchronizer`` (queue_size per input, slop in seconds, one message per input
per emitted set, ``allow_headerless=False``), usable without ROS and tested here.
`make_synchronizer` wires it to a node: it uses ``message_filters`` when that package is
importable (a ROS distro install) and the built-in otherwise, and tells which one it used.

Set selection (built-in): every time a message arrives, the synchronizer looks for a set of one
message per input whose stamps all lie within ``slop`` of each other (max - min <= slop). Among
all such sets it takes the one whose latest stamp (the *pivot*) is earliest; for that pivot each
other input contributes its latest message not after the pivot, which makes the set's spread
the smallest possible. The set is emitted at once (like message_filters' Python synchronizer,
which never waits for a possibly better set), its messages leave the queues, and every queued
message older than the set's message on the same input is dropped, as is any later arrival not
newer than the last emitted stamp of its input (it could only produce a set going back in time).
Out-of-order arrival within the queue window is fine: queues are kept sorted by stamp. Each
queue holds at most ``queue_size`` messages; on overflow the oldest goes.

Messages discarded without ever being part of an emitted set are counted as *unsynchronized*
drops (total and per input) for diagnostics.

The callback runs outside the lock, on the thread that completed the set, as
``callback(msg_0, msg_1, ...)`` in input order (message_filters' convention).
"""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

from smplify3d_ros.stamps import NS_PER_S, header_stamp_ns, stamp_to_ns

__all__ = [
    "ApproximateSynchronizer",
    "SyncHandle",
    "make_synchronizer",
    "message_filters_available",
]


class ApproximateSynchronizer:
    """Pure-Python approximate-time synchronizer (see the module docstring for the policy).

    Args:
        num_inputs: number of streams (>= 1); an emitted set has one message from each.
        queue_size: messages kept per input (>= 1).
        slop: largest allowed spread (seconds) between the stamps of one set.
        callback: called as ``callback(*msgs)`` with one message per input, in input order.
    """

    def __init__(self, num_inputs: int, queue_size: int, slop: float,
                 callback: Optional[Callable[..., Any]] = None):
        if int(num_inputs) < 1:
            raise ValueError(f"num_inputs must be >= 1, got {num_inputs}")
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not float(slop) >= 0.0:
            raise ValueError(f"slop must be >= 0 seconds, got {slop}")
        self.num_inputs = int(num_inputs)
        self.queue_size = int(queue_size)
        self.slop = float(slop)
        self._slop_ns = int(round(self.slop * NS_PER_S))
        self._callbacks: List[Callable[..., Any]] = [callback] if callback is not None else []
        self._lock = threading.Lock()
        # Per input: parallel sorted lists of stamps (ns) and messages.
        self._stamps: List[List[int]] = [[] for _ in range(self.num_inputs)]
        self._msgs: List[List[Any]] = [[] for _ in range(self.num_inputs)]
        self._last_emitted: List[Optional[int]] = [None] * self.num_inputs
        self._received = [0] * self.num_inputs
        self._dropped = [0] * self.num_inputs
        self._emitted = 0

    # -- public API ----------------------------------------------------------------------------

    def register_callback(self, callback: Callable[..., Any]) -> None:
        """Add a callback (message_filters' ``registerCallback``)."""
        self._callbacks.append(callback)

    registerCallback = register_callback

    def add(self, input_index: int, msg: Any, stamp_seconds: Any) -> int:
        """Queue ``msg`` (stamped ``stamp_seconds``: float s, builtin Time or rclpy Time) on input
        ``input_index``; emit every set it completes. Returns the number of sets emitted."""
        if not 0 <= input_index < self.num_inputs:
            raise IndexError(f"input_index {input_index} out of range 0..{self.num_inputs - 1}")
        stamp_ns = stamp_to_ns(stamp_seconds)
        with self._lock:
            ready = self._add_locked(input_index, msg, stamp_ns)
            callbacks = list(self._callbacks)
        for msgs in ready:
            for cb in callbacks:
                cb(*msgs)
        return len(ready)

    def add_msg(self, input_index: int, msg: Any) -> int:
        """Queue a message using its ``header.stamp`` (``allow_headerless=False``: a message
        without a header raises ``ValueError``)."""
        stamp_ns = header_stamp_ns(msg)
        if stamp_ns is None:
            raise ValueError(
                f"message of type {type(msg).__name__} on input {input_index} has no header "
                "stamp; the approximate-time synchronizer needs stamped messages")
        return self.add(input_index, msg, _NsStamp(stamp_ns))

    @property
    def unsynchronized_drops(self) -> int:
        """Messages discarded without ever being part of an emitted set (all inputs)."""
        with self._lock:
            return sum(self._dropped)

    def stats(self) -> dict:
        """Counters for diagnostics: received / dropped per input, sets emitted, queue fill."""
        with self._lock:
            return {
                "received": list(self._received),
                "unsynchronized_drops": list(self._dropped),
                "unsynchronized_drops_total": sum(self._dropped),
                "sets_emitted": self._emitted,
                "queued": [len(q) for q in self._stamps],
            }

    def clear(self) -> None:
        """Forget all queued messages (not counted as drops) and the last emitted stamps."""
        with self._lock:
            for i in range(self.num_inputs):
                self._stamps[i].clear()
                self._msgs[i].clear()
                self._last_emitted[i] = None

    # -- internals (lock held) -------------------------------------------------------------------

    def _add_locked(self, i: int, msg: Any, stamp_ns: int) -> List[Tuple[Any, ...]]:
        self._received[i] += 1
        last = self._last_emitted[i]
        if last is not None and stamp_ns <= last:
            self._dropped[i] += 1  # late: older than what this input already delivered
            return []
        stamps, msgs = self._stamps[i], self._msgs[i]
        pos = bisect.bisect_right(stamps, stamp_ns)
        stamps.insert(pos, stamp_ns)
        msgs.insert(pos, msg)
        while len(stamps) > self.queue_size:  # overflow: the oldest goes
            del stamps[0]
            del msgs[0]
            self._dropped[i] += 1
        ready = []
        while True:
            found = self._find_set()
            if found is None:
                break
            ready.append(self._pop_set(found))
        return ready

    def _find_set(self) -> Optional[List[int]]:
        """Indices (one per input) of the valid set with the earliest pivot, or None."""
        if any(not q for q in self._stamps):
            return None
        # Candidate pivots: every queued stamp, in increasing order. The earliest valid pivot is
        # at least the latest of the queue heads (a set needs one message from every input).
        floor = max(q[0] for q in self._stamps)
        candidates = sorted(
            (s, j) for j, q in enumerate(self._stamps)
            for s in q[bisect.bisect_left(q, floor):])
        slop = self._slop_ns
        for pivot, _ in candidates:
            idx = []
            lo = pivot
            for q in self._stamps:
                k = bisect.bisect_right(q, pivot) - 1  # latest message not after the pivot
                idx.append(k)
                lo = min(lo, q[k])
            if pivot - lo <= slop:
                return idx
        return None

    def _pop_set(self, idx: Sequence[int]) -> Tuple[Any, ...]:
        out = []
        for j, k in enumerate(idx):
            stamps, msgs = self._stamps[j], self._msgs[j]
            out.append(msgs[k])
            self._last_emitted[j] = stamps[k]
            self._dropped[j] += k  # older than the emitted one: never part of a set
            del stamps[:k + 1]
            del msgs[:k + 1]
        self._emitted += 1
        return tuple(out)


class _NsStamp:
    """A stamp already in integer nanoseconds (keeps full precision through `add`)."""

    __slots__ = ("nanoseconds",)

    def __init__(self, ns: int):
        self.nanoseconds = ns


# ----------------------------------------------------------------------------------------------
# Node wiring
# ----------------------------------------------------------------------------------------------

def message_filters_available() -> bool:
    """True when the ROS ``message_filters`` package is importable."""
    try:
        import message_filters  # noqa: F401
    except ImportError:
        return False
    return hasattr(message_filters, "ApproximateTimeSynchronizer")


@dataclass
class SyncHandle:
    """What `make_synchronizer` built. Keep it alive as long as the subscriptions should live.

    Attributes:
        backend: ``"message_filters"`` or ``"builtin"`` (log it at start-up).
        topics: the input topics, in callback argument order.
        synchronizer: the ``message_filters.ApproximateTimeSynchronizer`` or the built-in one.
        subscriptions: the message_filters Subscribers or rclpy Subscriptions.
    """

    backend: str
    topics: List[str]
    synchronizer: Any
    subscriptions: List[Any]
    _received: List[int] = field(default_factory=list)
    _emitted: List[int] = field(default_factory=lambda: [0])
    _headerless: List[int] = field(default_factory=list)
    _queue_size: int = 0

    @property
    def unsynchronized_drops(self) -> int:
        """Messages discarded without being part of a set. Exact for the built-in; for
        message_filters it is received - used - (at most queue_size per input still queued,
        counted as dropped only once the queue is full), i.e. a close lower-bound estimate."""
        if self.backend == "builtin":
            return self.synchronizer.unsynchronized_drops + sum(self._headerless)
        n = len(self._received)
        used = self._emitted[0]
        return sum(max(0, r - used - self._queue_size) for r in self._received[:n]) \
            + sum(self._headerless)

    def stats(self) -> dict:
        if self.backend == "builtin":
            s = self.synchronizer.stats()
            s["headerless_drops"] = list(self._headerless)
        else:
            s = {"received": list(self._received), "sets_emitted": self._emitted[0],
                 "unsynchronized_drops_total": self.unsynchronized_drops}
        s["backend"] = self.backend
        s["topics"] = list(self.topics)
        return s

    def destroy(self, node: Any) -> None:
        """Destroy the subscriptions (for node shutdown / re-configuration)."""
        for sub in self.subscriptions:
            real = getattr(sub, "sub", sub)  # message_filters.Subscriber wraps .sub
            try:
                node.destroy_subscription(real)
            except Exception:  # pragma: no cover - best effort at shutdown
                pass
        self.subscriptions = []


def make_synchronizer(node: Any, inputs: Sequence[Tuple[Any, str]], queue_size: int,
                      slop: float, callback: Callable[..., Any],
                      prefer_message_filters: bool = True, qos: Any = None,
                      callback_group: Any = None) -> SyncHandle:
    """Subscribe to ``inputs`` (a sequence of ``(msg_type, topic)``) and call
    ``callback(msg_0, msg_1, ...)`` for every approximately synchronized set.

    Uses ``message_filters.ApproximateTimeSynchronizer`` when importable and
    ``prefer_message_filters`` is true, the built-in `ApproximateSynchronizer` otherwise;
    ``handle.backend`` says which. ``qos`` defaults to ``qos_profile_sensor_data`` (best effort,
    matches both reliable and best-effort sensor publishers).
    """
    if not inputs:
        raise ValueError("make_synchronizer needs at least one (msg_type, topic) input")
    if qos is None:
        from rclpy.qos import qos_profile_sensor_data
        qos = qos_profile_sensor_data
    topics = [str(t) for _, t in inputs]
    n = len(inputs)
    received = [0] * n
    emitted = [0]
    headerless = [0] * n
    logger = node.get_logger() if hasattr(node, "get_logger") else None

    def counted_callback(*msgs):
        emitted[0] += 1
        callback(*msgs)

    if prefer_message_filters and message_filters_available():
        import message_filters

        subs = []
        for i, (msg_type, topic) in enumerate(inputs):
            kwargs = {"qos_profile": qos}
            if callback_group is not None:
                kwargs["callback_group"] = callback_group
            sub = message_filters.Subscriber(node, msg_type, topic, **kwargs)

            def count(_msg, _i=i):
                received[_i] += 1
            sub.registerCallback(count)
            subs.append(sub)
        sync = message_filters.ApproximateTimeSynchronizer(
            subs, queue_size, slop, allow_headerless=False)
        sync.registerCallback(counted_callback)
        return SyncHandle("message_filters", topics, sync, subs, received, emitted, headerless,
                          int(queue_size))

    sync = ApproximateSynchronizer(n, queue_size, slop, counted_callback)
    subs = []
    for i, (msg_type, topic) in enumerate(inputs):
        def on_msg(msg, _i=i, _topic=topic):
            received[_i] += 1
            stamp = header_stamp_ns(msg)
            if stamp is None:  # allow_headerless=False
                headerless[_i] += 1
                if headerless[_i] == 1 and logger is not None:
                    logger.error(f"dropping headerless messages on '{_topic}': the approximate "
                                 "time synchronizer needs header.stamp")
                return
            sync.add(_i, msg, _NsStamp(stamp))
        kwargs = {}
        if callback_group is not None:
            kwargs["callback_group"] = callback_group
        subs.append(node.create_subscription(msg_type, topic, on_msg, qos, **kwargs))
    return SyncHandle("builtin", topics, sync, subs, received, emitted, headerless,
                      int(queue_size))
