"""Spinning a node until SIGTERM/SIGINT, then shutting down cleanly.

A node started with ``&`` from a non-interactive shell ignores SIGINT, and launch and the tests
stop nodes with SIGTERM: both signals end the loop here.
"""
from __future__ import annotations

import signal
import threading
from typing import Callable, Optional

import rclpy
import rclpy.executors


def spin_until_signal(node, before_destroy: Optional[Callable[[], None]] = None,
                      stop: Optional[threading.Event] = None) -> int:
    """Spin ``node`` until SIGTERM or SIGINT (or until ``stop`` is set, when given: then the caller handles
    the signals); run ``before_destroy``, destroy the node, shut rclpy down."""
    if stop is None:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok() and not stop.is_set():
            executor.spin_once(timeout_sec=0.1)
    finally:
        if before_destroy is not None:
            before_destroy()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
