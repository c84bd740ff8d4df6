"""``smplify3d-bag process``: fit a bag offline with the same frame processing as the node.
"""
from __future__ import annotations

import rclpy  # noqa: F401  (first: the wheels' bootstrapper sets up the library path)

import bisect
import dataclasses
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from smplify3d_ros.bag_io import (BagToolError, add_tf_to_buffer, describe_topics, SMPL_ARRAY_TYPE, TF_STATIC, TF_TYPE,
                                  header_of, lookup_transform, make_typestore, open_reader, storage_plugin, topics_of,
                                  transforms_from_tf)

#: the bag's /tf history is kept whole for the --tracking-frame / --target-frame lookups (s)
BAG_TF_CACHE_S = 1e7


def pair_stamps(image_stamps: list, cloud_stamps: list, slop_ns: int) -> list:
    """[(image index, cloud index)] pairing each image with the nearest cloud within slop, each used once."""
    order = sorted(range(len(cloud_stamps)), key=lambda j: cloud_stamps[j])
    sorted_stamps = [cloud_stamps[j] for j in order]
    candidates = []
    for i, stamp in enumerate(image_stamps):
        k = bisect.bisect_left(sorted_stamps, stamp)
        for m in range(max(k - 2, 0), min(k + 2, len(order))):
            gap = abs(sorted_stamps[m] - stamp)
            if gap <= slop_ns:
                candidates.append((gap, i, order[m]))
    pairs, used_images, used_clouds = [], set(), set()
    for _gap, i, j in sorted(candidates):
        if i not in used_images and j not in used_clouds:
            pairs.append((i, j))
            used_images.add(i)
            used_clouds.add(j)
    return sorted(pairs)


def _nearest(stamps_sorted: list, stamp: int, slop_ns: int) -> list:
    """Indices into ``stamps_sorted`` within slop of ``stamp``."""
    lo = bisect.bisect_left(stamps_sorted, stamp - slop_ns)
    hi = bisect.bisect_right(stamps_sorted, stamp + slop_ns)
    return list(range(lo, hi))


def process(args) -> int:
    from rclpy.serialization import deserialize_message, serialize_message
    from rosbags.rosbag2 import Writer
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
    from tqdm import tqdm

    from std_msgs.msg import Header

    from smplify3d_core.pipeline import FrameOutcome, FrameProcessor, FrameStatus
    from smplify3d_ros.processing import outcome_in_frame
    from smplify3d_ros.conversions import ConversionError, camera_info_to_camera
    from smplify3d_ros.extrinsics import parse_static_matrix
    from smplify3d_ros.smpl_messages import errors_against_truth, smpl_array_from_outcome

    out = Path(args.out)
    reader = open_reader(args.input)
    if out.exists():
        reader.close()
        raise BagToolError(f"{out} exists already; rosbag2 writers never overwrite: choose a new path")
    try:
        topics = topics_of(reader)
        slop_ns = int(round(args.sync_slop * 1e9))
        for label, topic in (("image", args.image_topic), ("camera_info", args.camera_info_topic),
                             ("cloud", args.cloud_topic)):
            if topic not in topics:
                raise BagToolError(f"the bag has no {label} topic {topic}; its topics: {describe_topics(topics)} "
                                   f"(choose with --{label.replace('_', '-')}-topic)")
        image_type = topics[args.image_topic][0].msgtype
        image_cls = CompressedImage if image_type.endswith("CompressedImage") else Image
        use_observations = bool(args.observations_topic) and args.observations_topic in topics
        config = _pipeline_config(args)
        if not use_observations and not (config.vitpose_checkpoint and config.cliff_checkpoint):
            raise BagToolError(
                f"the bag has no observations topic {args.observations_topic or '(disabled)'} and no network "
                "checkpoints were given: pass --vitpose-checkpoint FILE --cliff-checkpoint FILE (ViTPose and CLIFF "
                "weight files) or a bag with smplify3d_ros/ObservationArray messages (--observations-topic); its "
                f"topics: {describe_topics(topics)}")

        # ---- pass 1: stamps, camera_info, observations, truth, tf (small messages only are kept)
        store = make_typestore()
        image_stamps, cloud_stamps, first_camera_raw = [], [], None
        image_frame = cloud_frame = None
        observations, truths, transforms = [], {}, []
        tf_history, frames_tf = _bag_frames_source(args)
        index_topics = [args.image_topic, args.cloud_topic, args.camera_info_topic]
        if use_observations:
            index_topics.append(args.observations_topic)
        if args.truth_topic and args.truth_topic in topics:
            index_topics.append(args.truth_topic)
        index_topics += [t for t in (TF_STATIC, "/tf") if t in topics and topics[t][0].msgtype == TF_TYPE]
        for connection, _ts, raw in reader.messages(
                connections=[c for t in index_topics for c in topics[t]]):
            topic = connection.topic
            if topic == args.image_topic:
                stamp, image_frame = header_of(raw)
                image_stamps.append(stamp)
            elif topic == args.cloud_topic:
                stamp, cloud_frame = header_of(raw)
                cloud_stamps.append(stamp)
            elif topic == args.camera_info_topic:
                first_camera_raw = first_camera_raw or bytes(raw)
            elif use_observations and topic == args.observations_topic:
                observations.append((header_of(raw)[0], bytes(raw)))
            elif topic == args.truth_topic:
                truths[header_of(raw)[0]] = bytes(raw)
            else:
                transforms += transforms_from_tf(store, raw)
                if frames_tf is not None:
                    add_tf_to_buffer(tf_history, store, raw, static=topic == TF_STATIC)
        if not image_stamps or not cloud_stamps or first_camera_raw is None:
            raise BagToolError(f"the bag holds {len(image_stamps)} images, {len(cloud_stamps)} clouds and "
                               f"{'some' if first_camera_raw else 'no'} camera_info messages: nothing to process")
        if args.T_cam_lidar is not None:
            T_source = "--T-cam-lidar"
            values = args.T_cam_lidar
        else:
            values = lookup_transform(transforms, image_frame, cloud_frame)
            T_source = f"{TF_STATIC} ({image_frame} <- {cloud_frame})"
            if values is None:
                raise BagToolError(f"the bag has no transform from the LiDAR frame '{cloud_frame}' to the camera frame "
                                   f"'{image_frame}' on /tf_static or /tf: pass --T-cam-lidar with 16 numbers "
                                   "(row-major 4x4, p_cam = T p_lidar)")
        try:
            T = parse_static_matrix(np.asarray(values, dtype=np.float64).reshape(-1), "T_cam_lidar")
        except ValueError as error:
            raise BagToolError(str(error))
        observations.sort(key=lambda item: item[0])
        obs_stamps = [s for s, _ in observations]
        pairs = pair_stamps(image_stamps, cloud_stamps, slop_ns)
        if not pairs:
            raise BagToolError(f"no image of {args.image_topic} has a cloud of {args.cloud_topic} within "
                               f"{args.sync_slop} s (--sync-slop)")

        # ---- models
        if use_observations:  # the bag's observations replace the networks
            config = dataclasses.replace(config, vitpose_checkpoint="", cliff_checkpoint="")
        try:
            processor = FrameProcessor.from_config(config)
        except (ValueError, FileNotFoundError) as error:
            raise BagToolError(str(error))
        print(f"processing {len(pairs)} frame(s) of {args.input} on {processor.fitter.device} with preset "
              f"{config.preset}; "
              f"T_cam_lidar from {T_source}; " + ("observations from the bag" if use_observations else "ViTPose + CLIFF"),
              file=sys.stderr)

        # ---- pass 2: fit the pairs
        image_for = {i: j for i, j in pairs}
        cloud_for = {j: i for i, j in pairs}
        waiting_images, waiting_clouds = {}, {}
        camera, camera_error = None, None
        n_image = n_cloud = 0
        results, skipped = [], defaultdict(int)
        stage_totals, stage_counts = defaultdict(float), defaultdict(int)
        pves, mpjpes, persons_total, persons_valid = [], [], 0, 0
        with Writer(out, version=9, storage_plugin=storage_plugin(args.storage)) as writer:
            output = writer.add_connection(args.output_topic, SMPL_ARRAY_TYPE, typestore=store)

            def write_outcome(outcome, image_header, image_bag_ns: int, image_stamp: int, T_target_cam) -> None:
                """Write one published frame's SMPLArray and score it against the bag's truth, if any."""
                nonlocal persons_total, persons_valid
                fit = outcome.fit
                header = image_header
                if T_target_cam is not None:
                    header = Header(stamp=image_header.stamp, frame_id=args.target_frame)
                message = smpl_array_from_outcome(outcome_in_frame(outcome, processor.fitter, T_target_cam),
                                                  header, include_vertices=args.publish_vertices)
                writer.write(output, image_bag_ns, serialize_message(message))
                results.append(image_stamp)
                persons_total += len(message.persons)
                persons_valid += sum(bool(person.valid) for person in message.persons)
                truth_raw = truths.get(image_stamp)
                if truth_raw is None and truths:
                    near = min(truths, key=lambda s: abs(s - image_stamp))
                    truth_raw = truths[near] if abs(near - image_stamp) <= slop_ns else None
                if fit is not None and truth_raw is not None:
                    from smplify3d_ros.msg import SMPLArray

                    fitted = fit.result.fitted.cpu().numpy().astype(bool)  # every body, valid or not: the fit's error
                    errors = errors_against_truth(fit.result.joints.detach().cpu().numpy()[fitted, :24],
                                                  fit.result.vertices.detach().cpu().numpy()[fitted],
                                                  deserialize_message(truth_raw, SMPLArray))
                    pves.extend(errors["pve_mm"])
                    mpjpes.extend(errors["mpjpe_mm"])

            progress = tqdm(total=len(pairs), desc="fitting", unit="frame", disable=args.quiet)
            data_connections = [c for t in (args.image_topic, args.cloud_topic, args.camera_info_topic) for c in topics[t]]
            for connection, bag_ns, raw in reader.messages(connections=data_connections):
                topic = connection.topic
                if topic == args.camera_info_topic:
                    camera, camera_error = _camera(deserialize_message(bytes(raw), CameraInfo), camera_info_to_camera,
                                                   ConversionError)
                    continue
                if topic == args.image_topic:
                    i, n_image = n_image, n_image + 1
                    if i not in image_for:
                        continue
                    waiting_images[i] = (bytes(raw), bag_ns)
                else:
                    j, n_cloud = n_cloud, n_cloud + 1
                    if j not in cloud_for:
                        continue
                    i = cloud_for[j]
                    waiting_clouds[j] = bytes(raw)
                j = image_for[i]
                if i not in waiting_images or j not in waiting_clouds:
                    continue
                (image_raw, image_bag_ns), cloud_raw = waiting_images.pop(i), waiting_clouds.pop(j)
                if camera is None and camera_error is None:  # camera_info recorded after the first frame
                    camera, camera_error = _camera(deserialize_message(first_camera_raw, CameraInfo),
                                                   camera_info_to_camera, ConversionError)
                image_msg = deserialize_message(image_raw, image_cls)
                cloud_msg = deserialize_message(cloud_raw, PointCloud2)
                transforms_at = _frame_transforms(args, frames_tf, image_msg)
                if isinstance(transforms_at, str):
                    outcome = FrameOutcome.skipped(transforms_at)
                else:
                    outcome = _frame_outcome(processor, image_msg, cloud_msg, camera, camera_error, T, observations,
                                             obs_stamps, image_stamps[i], slop_ns, args.sync_slop, use_observations,
                                             transforms_at["tracking_frame"])
                progress.update(1)
                if outcome.status is FrameStatus.SKIPPED:
                    skipped[outcome.reason] += 1
                    continue
                for name, seconds in outcome.stage_seconds.items():
                    stage_totals[name] += seconds
                    stage_counts[name] += 1
                # written as the node publishes: through the fixed-lag output, so possibly the frame before
                for done, payload in processor.output.push(outcome, (image_msg.header, image_bag_ns, image_stamps[i],
                                                                     transforms_at["target_frame"])):
                    write_outcome(done, *payload)
            for done, payload in processor.output.flush():
                write_outcome(done, *payload)
            progress.close()
            if args.copy_inputs:
                copies = {}
                for connection in reader.connections:
                    if connection.topic == args.output_topic:
                        continue
                    copies[connection.id] = writer.add_connection(
                        connection.topic, connection.msgtype, msgdef=connection.msgdef.data, rihs01=connection.digest,
                        offered_qos_profiles=connection.ext.offered_qos_profiles)
                for connection, bag_ns, raw in reader.messages(connections=[c for c in reader.connections if c.id in copies]):
                    writer.write(copies[connection.id], bag_ns, raw)
    finally:
        reader.close()

    summary = {
        "input": str(args.input), "output": str(out), "frames_paired": len(pairs), "frames_fitted": len(results),
        "frames_skipped": dict(skipped), "persons": persons_total, "persons_valid": persons_valid,
        "mean_persons_per_frame": persons_total / len(results) if results else 0.0,
        "mean_stage_seconds": {k: stage_totals[k] / stage_counts[k] for k in stage_totals},
        "mean_pve_mm": float(np.mean(pves)) if pves else None,
        "mean_mpjpe_mm": float(np.mean(mpjpes)) if mpjpes else None,
        "persons_with_truth": len(mpjpes),
    }
    _print_summary(summary)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2))
    return 0 if results else 1


def _observation_array_class():
    from smplify3d_ros.msg import ObservationArray

    return ObservationArray


def _camera(info, convert, error_type):
    try:
        return convert(info), None
    except error_type as error:
        return None, str(error)


def _pipeline_config(args):
    """The frame path's settings from the command line (a ROS params file's node-only keys are ignored)."""
    from smplify3d_core.pipeline_config import pipeline_config_from_args
    from smplify3d_core.typed_config import flatten_fields
    from smplify3d_ros.params import NodeConfig

    try:
        return pipeline_config_from_args(args, ignore_keys=tuple(s.name for s in flatten_fields(NodeConfig)))
    except (ValueError, FileNotFoundError) as error:
        raise BagToolError(str(error))


def _bag_frames_source(args):
    """(a TfBuffer to fill with the bag's whole /tf and /tf_static history, an ExtrinsicsSource looking up
    in it) for --tracking-frame / --target-frame; (None, None) when neither is given."""
    if not (getattr(args, "tracking_frame", "") or getattr(args, "target_frame", "")):
        return None, None
    from smplify3d_ros.extrinsics import ExtrinsicsSource
    from smplify3d_ros.tf_buffer import TfBuffer

    history = TfBuffer(cache_time_s=BAG_TF_CACHE_S, jump_back_s=BAG_TF_CACHE_S)
    return history, ExtrinsicsSource(buffer=history, timeout_s=0.0)


def _frame_transforms(args, frames_tf, image_msg):
    """{"tracking_frame": T or None, "target_frame": T or None} at the image's stamp (camera -> frame, (4, 4)),
    or the skip reason when the bag's TF lacks one (as the node does)."""
    from smplify3d_ros.processing import lookup_frame

    found = {}
    for name in ("tracking_frame", "target_frame"):
        found[name], why = (None, "") if frames_tf is None else lookup_frame(
            frames_tf, name, getattr(args, name, ""), image_msg.header.frame_id, image_msg.header.stamp)
        if why:
            return why
    return found


def _frame_outcome(processor, image_msg, cloud_msg, camera, camera_error, T, observations, obs_stamps, image_stamp,
                   slop_ns, slop_s, use_observations, T_track_cam=None):
    """The processor's outcome of one paired frame (as the node computes it)."""
    from rclpy.serialization import deserialize_message

    from smplify3d_core.pipeline import FrameOutcome
    from smplify3d_ros.processing import process_messages

    if camera_error is not None or camera is None:
        return FrameOutcome.skipped(camera_error or "no valid camera_info")
    candidates = None
    if use_observations:
        candidates = [deserialize_message(observations[k][1], _observation_array_class())
                      for k in _nearest(obs_stamps, image_stamp, slop_ns)]
    return process_messages(processor, image_msg, cloud_msg, camera, T, candidates, slop_s, T_track_cam=T_track_cam)


def _print_summary(summary: dict) -> None:
    lines = [f"frames: {summary['frames_fitted']} fitted of {summary['frames_paired']} paired",
             f"persons: {summary['persons']} ({summary['mean_persons_per_frame']:.2f} per fitted frame; "
             f"{summary['persons_valid']} valid)"]
    for reason, count in summary["frames_skipped"].items():
        lines.append(f"skipped {count}: {reason}")
    if summary["mean_stage_seconds"]:
        lines.append("mean stage times: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in summary["mean_stage_seconds"].items()))
    if summary["mean_pve_mm"] is not None or summary["mean_mpjpe_mm"] is not None:
        pve = "n/a" if summary["mean_pve_mm"] is None else f"{summary['mean_pve_mm']:.1f} mm"
        lines.append(f"vs ground truth ({summary['persons_with_truth']} persons, pelvis-aligned): PVE {pve}, "
                     f"MPJPE {summary['mean_mpjpe_mm']:.1f} mm")
    lines.append(f"wrote {summary['output']}")
    print("\n".join(lines))
