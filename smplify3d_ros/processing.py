"""ROS messages of one synchronized frame -> the core's :class:`~smplify3d_core.observe.SensorFrame`.

The only per-frame work the ROS layer does: decode the image (one conversion,
:func:`smplify3d_core.image.to_rgb8`) and the cloud (parsed once, to an (N, 3) array), and pick the
ObservationArray that belongs to the image. Everything after that — thinning, proposals, crops,
networks, the fit, tracking — is :class:`~smplify3d_core.pipeline.FrameProcessor`'s, shared by the
node and ``smplify3d-bag process``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from sensor_msgs.msg import CompressedImage

from smplify3d_core.observe import SensorFrame
from smplify3d_core.types import PinholeCamera
from smplify3d_ros.conversions import ConversionError, compressed_to_rgb8, image_to_rgb8, pointcloud2_to_xyz
from smplify3d_ros.stamps import stamp_to_ns, stamp_to_seconds

#: Skip reason in observations mode when no ObservationArray matches the image.
NO_OBSERVATIONS = "no observations within sync_slop of the image"


def image_message_to_rgb8(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a ``sensor_msgs/Image`` or ``CompressedImage`` (ConversionError when unusable)."""
    return compressed_to_rgb8(msg) if isinstance(msg, CompressedImage) else image_to_rgb8(msg)


def matching_observations(messages: Sequence, image_stamp, slop_s: float):
    """The newest ObservationArray of ``messages`` stamped within ``slop_s`` seconds of ``image_stamp``, or None."""
    target = stamp_to_ns(image_stamp)
    slop_ns = int(round(slop_s * 1e9))
    matching = [m for m in messages if abs(stamp_to_ns(m.header.stamp) - target) <= slop_ns]
    return matching[-1] if matching else None


def sensor_frame_from_messages(image_msg, cloud_msg, camera: PinholeCamera, T_cam_lidar: np.ndarray,
                               observations_msg=None, T_track_cam: Optional[np.ndarray] = None) -> SensorFrame:
    """The frame as arrays; raises ConversionError (a ValueError) naming what is wrong with a message.

    observations_msg: the frame's ObservationArray (its persons become the frame's observations),
    or None to let the front-ends find the persons. T_track_cam: (4, 4) camera -> tracking frame at
    the image's stamp, or None (the camera frame is the tracking frame).
    """
    from smplify3d_ros.smpl_messages import observations_from_message

    observations = None if observations_msg is None else observations_from_message(observations_msg)
    return SensorFrame(
        image=image_message_to_rgb8(image_msg),
        cloud_lidar=pointcloud2_to_xyz(cloud_msg),
        camera=camera,
        T_cam_lidar=T_cam_lidar,
        stamp=stamp_to_seconds(image_msg.header.stamp),
        observations=observations,
        T_track_cam=None if T_track_cam is None else np.asarray(T_track_cam, dtype=np.float64),
    )


def process_messages(processor, image_msg, cloud_msg, camera: PinholeCamera, T_cam_lidar: np.ndarray,
                     observation_candidates: Optional[Sequence], slop_s: float, should_stop=None,
                     T_track_cam: Optional[np.ndarray] = None):
    """The :class:`~smplify3d_core.pipeline.FrameOutcome` of one synchronized pair of messages.

    processor: the stream's FrameProcessor; observation_candidates: None when the persons come from
    the front-ends, else the recent ObservationArray messages (the one within ``slop_s`` of the
    image is used; none: the frame is skipped). A message that cannot be decoded skips the frame
    with the decoder's reason. The node and ``smplify3d-bag process`` both call this. should_stop:
    passed to :meth:`~smplify3d_core.pipeline.FrameProcessor.process` (cancels a fit at shutdown).
    T_track_cam: (4, 4) camera -> tracking frame at the image's stamp (None: the camera frame).
    """
    from smplify3d_core.pipeline import FrameOutcome

    observations_msg = None
    if observation_candidates is not None:
        observations_msg = matching_observations(observation_candidates, image_msg.header.stamp, slop_s)
        if observations_msg is None:
            return FrameOutcome.skipped(NO_OBSERVATIONS)
    try:
        frame = sensor_frame_from_messages(image_msg, cloud_msg, camera, T_cam_lidar, observations_msg, T_track_cam)
    except ConversionError as error:
        return FrameOutcome.skipped(str(error))
    return processor.process(frame, should_stop=should_stop)


def lookup_frame(source, parameter: str, frame: str, camera_frame: str, stamp) -> Tuple[Optional[np.ndarray], str]:
    """T_frame_camera of the ``parameter`` setting (tracking_frame or target_frame) at ``stamp``.

    source: an :class:`~smplify3d_ros.extrinsics.ExtrinsicsSource` in TF mode; frame: the setting's
    value; camera_frame: the image's optical frame; stamp: the image's stamp. Returns (T (4, 4),
    "") when found, (None, "") when ``frame`` is empty or the camera frame itself (nothing to do),
    and (None, reason) naming the setting and both frames when TF has no transform at the stamp (an
    older one would misplace the bodies of a moving robot): the frame is then skipped (the node and
    ``smplify3d-bag process`` alike).
    """
    if not frame or frame == camera_frame:
        return None, ""
    T, why = source.get(stamp, camera_frame=frame, lidar_frame=camera_frame, strict=True)
    return (T, "") if T is not None else (None, f"{parameter} {frame}: {why}")


def outcome_in_frame(outcome, fitter, T_target_cam: Optional[np.ndarray]):
    """``outcome`` with its fitted bodies moved by ``T_target_cam`` (4, 4, camera -> target frame, m):
    vertices, joints, global_orient and transl (:func:`smplify3d_core.fit.frames.transform_fit_result`,
    the rest pelvis from ``fitter``); ``outcome`` itself when the matrix is None or nothing was fitted.
    The input is not changed (the overlay is drawn from it, in the camera)."""
    if T_target_cam is None or outcome.fit is None:
        return outcome
    import dataclasses

    import torch

    from smplify3d_core.fit.frames import transform_fit_result

    result = outcome.fit.result
    with torch.no_grad():
        rest_pelvis = fitter.rest_pelvis(result.betas.to(fitter.device, fitter.body.v_template.dtype)).cpu()
    fit = dataclasses.replace(outcome.fit, result=transform_fit_result(result, T_target_cam, rest_pelvis))
    return dataclasses.replace(outcome, fit=fit)
