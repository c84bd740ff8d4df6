"""Messages of one synchronized frame in, fitted persons out — shared by the node and the bag tools.

No publishing and no subscriptions here: :class:`FrameProcessor` turns an image message, a
PointCloud2, a camera and an extrinsic (and optionally the matching ObservationArray) into a
:class:`~smplify3d_core.pipeline.FrameFit`, or into the reason why the frame cannot be used.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from sensor_msgs.msg import CompressedImage

from smplify3d_core.pipeline import FrameFit, FrontEnds, fit_frame, process_frame
from smplify3d_core.types import FrameObservation, PinholeCamera
from smplify3d_ros.conversions import ConversionError, compressed_to_rgb8, image_to_rgb8, pointcloud2_to_xyz, stamp_to_seconds


@dataclass
class ProcessedFrame:
    """The outcome of one frame: ``fit`` (None when nobody was found or the frame was skipped),
    ``skip_reason`` (None when the frame was used), ``image`` (RGB) and ``stage_seconds``."""

    fit: Optional[FrameFit] = None
    skip_reason: Optional[str] = None
    image: Optional[np.ndarray] = None
    stage_seconds: dict = field(default_factory=dict)


class FrameProcessor:
    """Fits the persons of one frame given as ROS messages.

    fitter: the SMPLify-3D optimizer; front_ends: ViTPose/CLIFF (unused when observations are
    given); max_persons: the nearest persons kept; observation_slop: seconds between the image stamp
    and an ObservationArray stamp for them to belong together.
    """

    def __init__(self, fitter, front_ends: FrontEnds, max_persons: int = 8, observation_slop: float = 0.05) -> None:
        self.fitter = fitter
        self.front_ends = front_ends
        self.max_persons = int(max_persons)
        self.observation_slop = float(observation_slop)

    def process(self, image_msg, cloud_msg, camera: Optional[PinholeCamera], T_cam_lidar: Optional[np.ndarray],
                observations: Optional[list] = None) -> ProcessedFrame:
        """observations: None to run the front-ends, else the recent ObservationArray messages."""
        if camera is None:
            return ProcessedFrame(skip_reason="no valid camera_info received yet")
        try:
            image = compressed_to_rgb8(image_msg) if isinstance(image_msg, CompressedImage) else image_to_rgb8(image_msg)
            cloud = pointcloud2_to_xyz(cloud_msg)
        except ConversionError as error:
            return ProcessedFrame(skip_reason=str(error))
        if image.shape[:2] != (camera.height, camera.width):
            return ProcessedFrame(skip_reason=f"image is {image.shape[1]}x{image.shape[0]} but camera_info says "
                                              f"{camera.width}x{camera.height}")
        if T_cam_lidar is None:
            return ProcessedFrame(skip_reason="no camera-LiDAR transform")
        if len(cloud) == 0:
            return ProcessedFrame(skip_reason="the point cloud has no valid points")
        start = time.perf_counter()
        frame_id = f"{stamp_to_seconds(image_msg.header.stamp):.6f}"
        if observations is None:
            fit, observed = process_frame(image, cloud, camera, T_cam_lidar, self.front_ends, self.fitter, frame_id=frame_id)
            stage_seconds = dict(observed.stage_seconds)
        else:
            persons, reason = self._persons_from_observations(observations, image_msg, cloud, camera, T_cam_lidar)
            if reason:
                return ProcessedFrame(skip_reason=reason, image=image)
            frame = FrameObservation("live", frame_id, camera, T_cam_lidar, persons, image=image, cloud_lidar=cloud)
            fit = fit_frame(frame, self.fitter)
            stage_seconds = dict(fit.result.stage_seconds)
        stage_seconds["total"] = time.perf_counter() - start
        return ProcessedFrame(fit=fit, image=image, stage_seconds=stage_seconds)

    def _persons_from_observations(self, observations, image_msg, cloud, camera, T):
        from smplify3d_core.perception.proposals import crop_persons_points, lidar_visibility_for_keypoints
        from smplify3d_ros.smpl_messages import observations_from_message

        stamp = stamp_to_seconds(image_msg.header.stamp)
        matching = [m for m in observations if abs(stamp_to_seconds(m.header.stamp) - stamp) <= self.observation_slop]
        if not matching:
            return None, "no observations within sync_slop of the image"
        persons = [p for p in observations_from_message(matching[-1]) if p.init is not None][: self.max_persons]
        if not persons:
            return None, "the observations hold no person with an initial estimate"
        cloud_cam = cloud @ T[:3, :3].T + T[:3, 3]
        crops = crop_persons_points(cloud_cam, np.stack([p.bbox_xywh for p in persons]), camera)
        for person, ids in zip(persons, crops):
            person.points = cloud_cam[ids]
            person.lidar_visibility = lidar_visibility_for_keypoints(person.points, person.keypoints, camera,
                                                                     self.front_ends.lidar_kernel_px)
        return persons, None
