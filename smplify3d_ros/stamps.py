"""Time stamps: one conversion for every form the ROS layer meets.

A stamp may be a ``builtin_interfaces/Time`` message (``sec`` + ``nanosec``), an rclpy ``Time``
(``nanoseconds``), integer nanoseconds (bags) or float seconds. Nanoseconds are exact; float
seconds lose precision past ~2^53 ns (about 104 days of nanoseconds since the epoch is fine:
float64 keeps ~0.2 µs there).
"""
from __future__ import annotations

import math
from typing import Any, Optional

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp: Any) -> int:
    """Integer nanoseconds from a Time message, an rclpy Time or float seconds."""
    if hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)
    if hasattr(stamp, "nanoseconds"):
        return int(stamp.nanoseconds)
    return int(round(float(stamp) * NS_PER_S))


def stamp_to_seconds(stamp: Any) -> float:
    """Float seconds from any stamp form."""
    return stamp_to_ns(stamp) / NS_PER_S


def ns_to_stamp(ns: int):
    """``builtin_interfaces/Time`` of integer nanoseconds (negative times as ROS writes them:
    ``sec`` negative, ``nanosec`` in [0, 1e9))."""
    from builtin_interfaces.msg import Time

    sec, nanosec = divmod(int(ns), NS_PER_S)
    return Time(sec=int(sec), nanosec=int(nanosec))


def to_stamp(stamp: Any):
    """``builtin_interfaces/Time`` from any stamp form; None gives the zero time."""
    from builtin_interfaces.msg import Time

    if stamp is None:
        return Time()
    if isinstance(stamp, Time):
        return stamp
    return ns_to_stamp(stamp_to_ns(stamp))


def header_stamp_ns(msg: Any) -> Optional[int]:
    """The message's ``header.stamp`` in nanoseconds, or None for a headerless message."""
    stamp = getattr(getattr(msg, "header", None), "stamp", None)
    return None if stamp is None else stamp_to_ns(stamp)


def seconds_to_stamp(seconds: float):
    """Float seconds -> ``builtin_interfaces/Time`` (nanosec rounded, always in [0, 1e9)).

    Negative times are represented as ROS does: ``sec`` negative, ``nanosec`` positive.
    """
    from builtin_interfaces.msg import Time

    if not math.isfinite(seconds):
        raise ValueError(f"cannot convert non-finite time {seconds} to a stamp")
    sec = math.floor(seconds)
    nanosec = int(round((seconds - sec) * 1e9))
    if nanosec >= 10**9:
        sec, nanosec = sec + 1, nanosec - 10**9
    if not (-(2**31) <= sec < 2**31):
        raise ValueError(f"time {seconds} s does not fit builtin_interfaces/Time (int32 sec)")
    return Time(sec=int(sec), nanosec=int(nanosec))
