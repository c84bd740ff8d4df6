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

Time jumps: a message stamped more than ``time_jump`` seconds before the newest stamp seen on
its input means time went backwards (a looping bag, a restarted simulator under ``use_sim_time``,
a clock step, or one earlier message stamped in the future). The synchronizer then forgets every
queued message and every last-emitted stamp, reports the jump, and goes on from the new message,
as tf2 and message_filters do; without this one future stamp would block the stream for good.

Messages discarded without ever being part of an emitted set are counted as *unsynchronized*
drops (total, per input and per reason: `DROP_REASONS`) for diagnostics; a ``drop_listener``
and a ``jump_listener`` hear of each as it happens (outside the lock).

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
    "DROP_REASONS",
    "DEFAULT_TIME_JUMP_S",
    "ApproximateSynchronizer",
    "SyncHandle",
    "make_synchronizer",
    "message_filters_available",
]


#: Why a message left the synchronizer without being part of a set (the keys of ``stats()["drops_by_reason"]``).
DROP_REASONS = {
    "late": "stamp not newer than the last synchronized message of its topic (a duplicate or out-of-order stamp)",
    "unmatched": "no message of the other topics within the slop while it was queued (the queue overflowed)",
    "superseded": "a newer message of the same topic was synchronized first",
    "zero_stamp": "header.stamp is zero (not set by the publisher)",
    "time_jump": "queued when time jumped back (its stamp belongs to the old timeline)",
    "future_stamp": "stamped further ahead of the node's clock than max_stamp_future (a sensor with a bad clock)",
    "headerless": "the message has no header.stamp",
}
#: A stamp this much older (s) than the newest one seen on its input is taken as a jump back in time.
DEFAULT_TIME_JUMP_S = 1.0


class ApproximateSynchronizer:
    """Pure-Python approximate-time synchronizer (see the module docstring for the policy).

    Args:
        num_inputs: number of streams (>= 1); an emitted set has one message from each.
        queue_size: messages kept per input (>= 1).
        slop: largest allowed spread (seconds) between the stamps of one set.
        callback: called as ``callback(*msgs)`` with one message per input, in input order.
        time_jump: a stamp more than this many seconds before the newest one seen on its input is a
            jump back in time: the queues are cleared and synchronization starts again from it.
        drop_listener: called as ``drop_listener(input_index, reason)`` (a `DROP_REASONS` key) for
            every message dropped without being part of a set.
        jump_listener: called as ``jump_listener(input_index, newest_ns, stamp_ns)`` at each jump.
    """

    def __init__(self, num_inputs: int, queue_size: int, slop: float,
                 callback: Optional[Callable[..., Any]] = None, time_jump: float = DEFAULT_TIME_JUMP_S,
                 drop_listener: Optional[Callable[[int, str], Any]] = None,
                 jump_listener: Optional[Callable[[int, int, int], Any]] = None):
        if int(num_inputs) < 1:
            raise ValueError(f"num_inputs must be >= 1, got {num_inputs}")
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not float(slop) >= 0.0:
            raise ValueError(f"slop must be >= 0 seconds, got {slop}")
        if not float(time_jump) > 0.0:
            raise ValueError(f"time_jump must be > 0 seconds, got {time_jump}")
        self.num_inputs = int(num_inputs)
        self.time_jump = float(time_jump)
        self._time_jump_ns = int(round(self.time_jump * NS_PER_S))
        self._drop_listener = drop_listener
        self._jump_listener = jump_listener
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
        self._drops_by_reason = {reason: 0 for reason in DROP_REASONS}
        self._newest: List[Optional[int]] = [None] * self.num_inputs
        self._jumps = 0
        self._emitted = 0
        self._events: List[Tuple] = []  # (kind, args) to report once the lock is released

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
            events, self._events = self._events, []
        for kind, args in events:
            listener = self._drop_listener if kind == "drop" else self._jump_listener
            if listener is not None:
                listener(*args)
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

    def count_drop(self, input_index: int, reason: str) -> None:
        """Count (and report) a message of ``input_index`` turned away before `add` (``reason``: a
        `DROP_REASONS` key), so that received = used + dropped + queued holds."""
        with self._lock:
            self._received[input_index] += 1
            self._drop(input_index, reason)
            events, self._events = self._events, []
        for _, args in events:
            if self._drop_listener is not None:
                self._drop_listener(*args)

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
                "drops_by_reason": dict(self._drops_by_reason),
                "time_jumps": self._jumps,
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
                self._newest[i] = None

    # -- internals (lock held) -------------------------------------------------------------------

    def _drop(self, i: int, reason: str, count: int = 1) -> None:
        if count <= 0:
            return
        self._dropped[i] += count
        self._drops_by_reason[reason] += count
        self._events.extend([("drop", (i, reason))] * count)

    def _add_locked(self, i: int, msg: Any, stamp_ns: int) -> List[Tuple[Any, ...]]:
        self._received[i] += 1
        if stamp_ns == 0:
            self._drop(i, "zero_stamp")
            return []
        newest = self._newest[i]
        if newest is not None and stamp_ns < newest - self._time_jump_ns:
            self._jumps += 1
            self._events.append(("jump", (i, newest, stamp_ns)))
            for j in range(self.num_inputs):  # forget everything: the old stamps belong to another timeline
                self._drop(j, "time_jump", len(self._stamps[j]))
                self._stamps[j].clear()
                self._msgs[j].clear()
                self._last_emitted[j] = None
                self._newest[j] = None
        self._newest[i] = stamp_ns if self._newest[i] is None else max(self._newest[i], stamp_ns)
        last = self._last_emitted[i]
        if last is not None and stamp_ns <= last:
            self._drop(i, "late")  # older than what this input already delivered
            return []
        stamps, msgs = self._stamps[i], self._msgs[i]
        pos = bisect.bisect_right(stamps, stamp_ns)
        stamps.insert(pos, stamp_ns)
        msgs.insert(pos, msg)
        while len(stamps) > self.queue_size:  # overflow: the oldest goes
            del stamps[0]
            del msgs[0]
            self._drop(i, "unmatched")
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
            self._drop(j, "superseded", k)  # older than the emitted one: never part of a set
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
    _jumps: List[int] = field(default_factory=lambda: [0])

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

    @property
    def time_jumps(self) -> int:
        """Jumps back in time seen on the inputs (each cleared the queues)."""
        return self._jumps[0]

    def stats(self) -> dict:
        if self.backend == "builtin":
            s = self.synchronizer.stats()
            s["headerless_drops"] = list(self._headerless)
        else:
            s = {"received": list(self._received), "sets_emitted": self._emitted[0],
                 "unsynchronized_drops_total": self.unsynchronized_drops}
        s["time_jumps"] = self.time_jumps
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


def _clear_message_filters_queues(sync: Any) -> None:
    """Forget what a ``message_filters.ApproximateTimeSynchronizer`` has queued (after a time jump)."""
    lock = getattr(sync, "lock", None)
    queues = getattr(sync, "queues", None)
    if queues is None:
        return
    if lock is not None:
        with lock:
            for queue in queues:
                queue.clear()
    else:
        for queue in queues:
            queue.clear()


def make_synchronizer(node: Any, inputs: Sequence[Tuple[Any, str]], queue_size: int,
                      slop: float, callback: Callable[..., Any],
                      prefer_message_filters: bool = True, qos: Any = None,
                      callback_group: Any = None, time_jump: float = DEFAULT_TIME_JUMP_S,
                      on_drop: Optional[Callable[[str, str], Any]] = None,
                      on_jump: Optional[Callable[[str, float], Any]] = None,
                      max_future: Optional[float] = None) -> SyncHandle:
    """Subscribe to ``inputs`` (a sequence of ``(msg_type, topic)``) and call
    ``callback(msg_0, msg_1, ...)`` for every approximately synchronized set.

    Uses ``message_filters.ApproximateTimeSynchronizer`` when importable and
    ``prefer_message_filters`` is true, the built-in `ApproximateSynchronizer` otherwise;
    ``handle.backend`` says which. ``qos`` defaults to ``qos_profile_sensor_data`` (best effort,
    matches both reliable and best-effort sensor publishers).

    Both backends detect a jump back in time (a stamp more than ``time_jump`` s before the newest
    seen on its topic), clear their queues and call ``on_jump(topic, seconds_back)``. ``on_drop(topic,
    reason)`` hears of each message the built-in drops (reason: a `DROP_REASONS` key; with
    message_filters only headerless messages are reported, the rest is its own business).

    ``max_future`` (s, built-in only): a message stamped further than this ahead of the node's clock
    is dropped (reason ``future_stamp``) before it reaches the queues, so one bad stamp never becomes
    the synchronizer's "now"; not checked while the clock reads zero (``use_sim_time`` before /clock).
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
    jumps = [0]

    def counted_callback(*msgs):
        emitted[0] += 1
        callback(*msgs)

    def report_drop(i: int, reason: str) -> None:
        if on_drop is not None:
            on_drop(topics[i], reason)

    def report_jump(i: int, newest_ns: int, stamp_ns: int) -> None:
        jumps[0] += 1
        if on_jump is not None:
            on_jump(topics[i], (newest_ns - stamp_ns) / NS_PER_S)

    kwargs = {} if callback_group is None else {"callback_group": callback_group}
    if prefer_message_filters and message_filters_available():
        import message_filters

        subs = []
        newest: List[Optional[int]] = [None] * n
        sync_box: List[Any] = []
        jump_ns = int(round(float(time_jump) * NS_PER_S))
        for i, (msg_type, topic) in enumerate(inputs):
            sub = message_filters.Subscriber(node, msg_type, topic, qos_profile=qos, **kwargs)

            def count(msg, _i=i):  # registered before the synchronizer's own callback: runs first
                received[_i] += 1
                stamp = header_stamp_ns(msg)
                if stamp is None:
                    headerless[_i] += 1
                    report_drop(_i, "headerless")
                    return
                if newest[_i] is not None and stamp < newest[_i] - jump_ns and sync_box:
                    _clear_message_filters_queues(sync_box[0])
                    report_jump(_i, newest[_i], stamp)
                    newest[:] = [None] * n
                newest[_i] = stamp if newest[_i] is None else max(newest[_i], stamp)
            sub.registerCallback(count)
            subs.append(sub)
        sync = message_filters.ApproximateTimeSynchronizer(
            subs, queue_size, slop, allow_headerless=False)
        sync_box.append(sync)
        sync.registerCallback(counted_callback)
        return SyncHandle("message_filters", topics, sync, subs, received, emitted, headerless,
                          int(queue_size), jumps)

    future_ns = None if max_future is None else int(round(float(max_future) * NS_PER_S))
    sync = ApproximateSynchronizer(n, queue_size, slop, counted_callback, time_jump=time_jump,
                                   drop_listener=report_drop, jump_listener=report_jump)
    subs = []
    for i, (msg_type, topic) in enumerate(inputs):
        def on_msg(msg, _i=i):
            received[_i] += 1
            stamp = header_stamp_ns(msg)
            if stamp is None:  # allow_headerless=False
                headerless[_i] += 1
                report_drop(_i, "headerless")
                return
            if future_ns is not None:
                now = node.get_clock().now().nanoseconds
                if now > 0 and stamp > now + future_ns:
                    sync.count_drop(_i, "future_stamp")
                    return
            sync.add(_i, msg, _NsStamp(stamp))
        subs.append(node.create_subscription(msg_type, topic, on_msg, qos, **kwargs))
    return SyncHandle("builtin", topics, sync, subs, received, emitted, headerless,
                      int(queue_size), jumps)
