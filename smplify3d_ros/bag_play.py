"""``smplify3d-bag play``: publish a bag into the live ROS graph as raw CDR bytes, with /clock.
"""
from __future__ import annotations

import rclpy  # noqa: F401  (first: the wheels' bootstrapper sets up the library path)

import signal
import sys
import threading
import time


from smplify3d_ros.bag_io import (BagToolError, describe_topics, TF_STATIC, message_class, open_reader, topics_of)
from smplify3d_ros.stamps import ns_to_stamp


def play(args, ros_args) -> int:
    from rclpy.duration import Duration
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    if args.rate <= 0:
        raise BagToolError("--rate must be > 0")
    reader = open_reader(args.bag)
    try:
        topics = topics_of(reader)
        wanted = args.topics or sorted(topics)
        missing = [t for t in wanted if t not in topics]
        if missing:
            raise BagToolError(f"the bag has no topic {', '.join(missing)}; its topics: {describe_topics(topics)}")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        context = rclpy.Context()
        rclpy.init(args=ros_args, context=context)
        node = rclpy.create_node(args.node_name, context=context)
        try:
            publishers, connections = {}, []
            for topic in wanted:
                msgtype = topics[topic][0].msgtype
                cls = message_class(msgtype)
                if cls is None:
                    print(f"skipping {topic}: no Python package for {msgtype} here"
                          + (" (run scripts/build_msgs.sh to build tf2_msgs, or give the node extrinsics_source "
                             "static and T_cam_lidar)" if topic in (TF_STATIC, "/tf") else ""),
                          file=sys.stderr)
                    continue
                durability = DurabilityPolicy.TRANSIENT_LOCAL if topic == TF_STATIC else DurabilityPolicy.VOLATILE
                qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=durability)
                publishers[topic] = node.create_publisher(cls, topic, qos)
                connections += topics[topic]
            if not publishers:
                raise BagToolError("none of the selected topics can be published here")
            clock_pub = None if args.no_clock else node.create_publisher(
                Clock, "/clock", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))

            if args.wait_for_subscribers > 0:
                waiting = [t for t in (args.wait_topics or list(publishers)) if t in publishers]
                deadline = time.monotonic() + args.wait_for_subscribers
                while not stop.is_set() and time.monotonic() < deadline:
                    if all(publishers[t].get_subscription_count() > 0 for t in waiting):
                        break
                    stop.wait(0.05)
                lonely = [t for t in waiting if publishers[t].get_subscription_count() == 0]
                if lonely:
                    print(f"no subscriber on {', '.join(lonely)} after {args.wait_for_subscribers} s; playing anyway",
                          file=sys.stderr)

            print(f"playing {len(publishers)} topic(s) of {args.bag} at {args.rate}x" + (" in a loop" if args.loop else ""),
                  flush=True)
            clock_period = 1.0 / args.clock_hz if args.clock_hz > 0 else None
            count = 0
            while not stop.is_set():
                first_ns = None
                wall_start = time.monotonic()
                last_clock_wall = -1.0
                for connection, stamp_ns, raw in reader.messages(connections=connections):
                    if first_ns is None:
                        first_ns = stamp_ns
                    target = wall_start + (stamp_ns - first_ns) * 1e-9 / args.rate
                    while not stop.is_set():
                        now = time.monotonic()
                        if now >= target:
                            break
                        if clock_pub is not None and clock_period and now - last_clock_wall >= clock_period / args.rate:
                            bag_now = first_ns + int((now - wall_start) * args.rate * 1e9)
                            clock_pub.publish(Clock(clock=ns_to_stamp(bag_now)))
                            last_clock_wall = now
                        stop.wait(min(target - now, (clock_period or 0.05) / args.rate))
                    if stop.is_set():
                        break
                    if clock_pub is not None:
                        clock_pub.publish(Clock(clock=ns_to_stamp(stamp_ns)))
                    publishers[connection.topic].publish(bytes(raw))
                    count += 1
                if not args.loop:
                    break
            for publisher in publishers.values():  # let reliable subscribers receive the last messages
                publisher.wait_for_all_acked(Duration(seconds=2.0))
            print(f"published {count} messages on {len(publishers)} topics" + (" (stopped)" if stop.is_set() else ""))
        finally:
            node.destroy_node()
            rclpy.try_shutdown(context=context)
    finally:
        reader.close()
    return 0
