"""``smplify3d-bag record-sim``: a synthetic rosbag2 with the sim node's topics, written without DDS.

Frame i is frame i of a simulated sequence (:class:`~smplify3d_core.sim.sequence.SequencePlan`,
fps = ``--rate``; stable tracking ids in the observations and the ground truth), and ``/tf`` gets
``odom -> camera`` (the frame's T_odom_cam) per frame; the sequence settings are in the bag's custom
data ``smplify3d.sequence``. With ``--random-scenes`` the frames cycle through ``--scenes``
independent random frames instead (the sim node with ``sequence: false``).
"""
from __future__ import annotations

import rclpy  # noqa: F401  (first: the wheels' bootstrapper sets up the library path)

import json
import time
from pathlib import Path


from smplify3d_ros.bag_io import (BagToolError, MSGTYPES, SIM_TOPICS, TF_STATIC, TF_TYPE, make_typestore, storage_plugin,
                                  tf_message_cdr, transient_local_qos)
from smplify3d_ros.stamps import ns_to_stamp

TF = "/tf"


TF_LEAD_NS = 1_000_000  # odom -> camera is logged this long before the frame's sensor messages


def record_sim(args) -> int:
    from rclpy.serialization import serialize_message

    from smplify3d_ros.sim_node import sim_frame_messages
    from rosbags.rosbag2 import Writer
    from tqdm import tqdm

    from smplify3d_core.body.default_model import default_body_model_dir
    from smplify3d_core.body.model import SMPLBody
    from smplify3d_core.sim.scene import simulate_scene
    from smplify3d_core.sim.sequence import SequencePlan, SequenceSettings

    out = Path(args.out)
    if out.exists():
        raise BagToolError(f"{out} exists already; rosbag2 writers never overwrite: choose a new path")
    if args.frames < 1 or args.rate <= 0 or args.persons < 0 or args.scenes < 1:
        raise BagToolError("--frames and --scenes must be >= 1, --rate > 0 and --persons >= 0")
    random_scenes = bool(getattr(args, "random_scenes", False))
    if random_scenes and (getattr(args, "sequence", False) or args.moving_robot):
        raise BagToolError("--random-scenes writes no sequence: it goes with neither --sequence nor --moving-robot")
    body = SMPLBody.from_path(args.smpl_model_path or default_body_model_dir())
    store = make_typestore()
    start_ns = int(round(args.start_time * 1e9)) if args.start_time is not None else time.time_ns()
    period_ns = int(round(1e9 / args.rate))
    scenes: dict = {}
    sequence = not random_scenes
    plan = None
    if sequence:
        settings = SequenceSettings(persons=args.persons, frames=args.frames, fps=args.rate, preset=args.sensor,
                                    seed=args.seed, moving_robot=bool(args.moving_robot))
        plan = SequencePlan(settings, body)
    with Writer(out, version=9, storage_plugin=storage_plugin(args.storage)) as writer:
        connections = {key: writer.add_connection(SIM_TOPICS[key], MSGTYPES[key], typestore=store)
                       for key in ("camera_info", "observations", "ground_truth", "image", "points")}
        tf_connection = writer.add_connection(TF_STATIC, TF_TYPE, typestore=store,
                                              offered_qos_profiles=transient_local_qos())
        writer.set_custom_data("smplify3d.generator", json.dumps(
            {"sensor": args.sensor, "persons": args.persons, "seed": args.seed, "scenes": args.scenes,
             "rate": args.rate, "camera_frame": args.camera_frame, "lidar_frame": args.lidar_frame}))
        if plan is not None:
            odom_connection = writer.add_connection(TF, TF_TYPE, typestore=store)
            writer.set_custom_data("smplify3d.sequence", json.dumps(
                {**plan.settings.to_dict(), "name": plan.name, "odom_frame": args.odom_frame,
                 "camera_frame": args.camera_frame, "events": plan.events}))
        for i in tqdm(range(args.frames), desc="simulating", unit="frame", disable=args.quiet):
            stamp_ns = start_ns + i * period_ns
            if plan is not None:
                item = plan.simulate_frame(i)
                frame = item.scene.frame
                # logged 1 ms before the sensor messages of its stamp (header stamp exact), as a robot's
                # odometry leads its camera and LiDAR: played back, the transform is there when the frame is
                writer.write(odom_connection, stamp_ns - TF_LEAD_NS, tf_message_cdr(store, item.T_odom_cam, stamp_ns,
                                                                                     args.odom_frame, args.camera_frame))
            else:
                index = i % args.scenes
                if index not in scenes:
                    scenes[index] = simulate_scene(body, persons=args.persons, preset=args.sensor, seed=args.seed + index)
                frame = scenes[index].frame
            if i == 0:
                writer.set_custom_data("smplify3d.T_cam_lidar", json.dumps(frame.T_cam_lidar.reshape(-1).tolist()))
                writer.write(tf_connection, stamp_ns, tf_message_cdr(store, frame.T_cam_lidar, stamp_ns,
                                                                      args.camera_frame, args.lidar_frame))
            messages = sim_frame_messages(frame, ns_to_stamp(stamp_ns), args.camera_frame, args.lidar_frame)
            for key, msg in messages.items():
                writer.write(connections[key], stamp_ns, serialize_message(msg))
    kind = f"sequence frames ({'moving' if args.moving_robot else 'still'} robot)" if sequence else "frames"
    print(f"wrote {args.frames} simulated {kind} ({args.persons} persons, sensor preset {args.sensor}, {args.rate} Hz) "
          f"to {out} ({args.storage})")
    return 0
