"""One frame in, fitted and tracked bodies out: the per-frame outcome every entry point shares.

:class:`FrameProcessor` owns the whole per-frame path — :func:`~smplify3d_core.observe.observe_frame`
(proposals or boxes or observations, crops, ViTPose, LiDAR visibility, CLIFF), the SMPLify-3D fit
of all persons in one batch, and the track ids — and returns a typed :class:`FrameOutcome`
(``empty``, ``skipped`` with a reason, or ``fitted``). The ROS node and ``smplify3d-bag process``
only convert messages to a :class:`~smplify3d_core.observe.SensorFrame` and the outcome back to
messages, so a bag processed offline gives the same bodies as the live node on the same frames.

Frames that already carry every person's points, keypoints and initial estimate (scene folders,
the simulator) can go straight to :func:`fit_frame`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from smplify3d_core.fit.inputs import FitInputs
from smplify3d_core.fixed_lag import FixedLagOutput
from smplify3d_core.fit.optimizer import FitCancelled, FitResult, SMPLify3D  # noqa: F401  (FitCancelled: raised by process)
from smplify3d_core.fit.verdict import VerdictConfig
from smplify3d_core.models import FrontEnds, load_models
from smplify3d_core.observe import ObservedFrame, SensorFrame, complete_inits, observe_frame
from smplify3d_core.pipeline_config import PipelineConfig
from smplify3d_core.tracked_fit import PersonTrack, fit_tracked_frame, judge_fit
from smplify3d_core.tracking import PersonTracker
from smplify3d_core.types import FrameObservation, FrameStatus  # noqa: F401  (FrameStatus: part of this module's API)


@dataclass
class FrameFit:
    """A frame's observations with the fitted result (persons in the frame's order)."""

    frame: FrameObservation
    inputs: FitInputs
    result: FitResult


def fit_frame(frame: FrameObservation, fitter: SMPLify3D, verdict: Optional[VerdictConfig] = None,
              should_stop=None) -> FrameFit:
    """Fit every person of ``frame`` in one batch (each needs points, keypoints and ``init``), then judge
    each fitted body (:mod:`smplify3d_core.fit.verdict`; ``verdict``: its thresholds, default
    :class:`VerdictConfig`): a body that fails a check is not valid and carries the check's flag.
    ``should_stop``: see :meth:`SMPLify3D.fit` (raises FitCancelled)."""
    if not frame.persons:
        raise ValueError(f"frame {frame.frame_id} of {frame.sequence} has no persons to fit")
    inputs = FitInputs.from_observations(frame.persons, frame.camera, frame.T_cam_lidar, device=fitter.device,
                                         dtype=fitter.body.v_template.dtype)
    result = fitter.fit(inputs, should_stop=should_stop)
    judge_fit(fitter, inputs, result, verdict or VerdictConfig())
    return FrameFit(frame, inputs, result)


@dataclass
class FrameOutcome:
    """The outcome of one frame.

    status: :class:`FrameStatus`; reason: why it was skipped (SKIPPED only).
    fit: the fitted and judged persons (FITTED only); tracks: one :class:`PersonTrack` per fitted
        person (id, age, warm-started, restarted); track_ids: their ids.
    dropped: (person, reason) of the candidates that were not fitted (weak keypoints, beyond
        ``max_persons``...); stage_seconds: wall time per stage, s: ``proposals`` (segmentation and
        crops), ``keypoints`` (ViTPose), ``initial_smpl`` (CLIFF, every call of the frame), ``fit``
        (the whole tracked fit step: association, inputs, the optimizer, the verdict, restarts; CLIFF
        excluded), the optimizer's own steps inside it (``icp``, ``stage1``...) and ``total`` (the frame).
    cloud_points: (valid points, points used): fewer used when the cloud was thinned.
    stamp: the frame's time, s; T_track_cam: (4, 4) camera -> tracking frame at ``stamp`` (None: the
        camera frame), both set for EMPTY and FITTED outcomes (the fixed-lag output averages in it).
    """

    status: FrameStatus
    reason: Optional[str] = None
    fit: Optional[FrameFit] = None
    tracks: List[PersonTrack] = field(default_factory=list)
    dropped: List[Tuple[str, str]] = field(default_factory=list)
    stage_seconds: dict = field(default_factory=dict)
    cloud_points: Tuple[int, int] = (0, 0)
    stamp: Optional[float] = None
    T_track_cam: Optional[np.ndarray] = None

    @classmethod
    def skipped(cls, reason: str) -> "FrameOutcome":
        return cls(FrameStatus.SKIPPED, reason=str(reason))

    @property
    def track_ids(self) -> List[int]:
        """The track id of each fitted person."""
        return [track.track_id for track in self.tracks]


class FrameProcessor:
    """Fits and tracks the persons of a stream of frames (one instance per stream: it keeps the tracks).

    config: the frame path's settings; fitter: the SMPLify-3D optimizer; front_ends: ViTPose /
    CLIFF (either None: those come from each frame's observations). Tracked persons are fitted
    warm from their tracks' predictions (:mod:`smplify3d_core.tracked_fit`); CLIFF runs only for
    the persons fitted cold.

    :meth:`process` returns each frame's outcome as soon as it is fitted. What is published goes
    through :attr:`output` (:class:`~smplify3d_core.fixed_lag.FixedLagOutput`, ``tracker.output_lag_frames``):
    push every outcome there and publish what it releases, and :meth:`FixedLagOutput.flush` at the
    end of the stream.
    """

    def __init__(self, config: PipelineConfig, fitter: SMPLify3D, front_ends: Optional[FrontEnds] = None) -> None:
        self.config = config
        self.fitter = fitter
        self.front_ends = front_ends or FrontEnds()
        self.tracker = PersonTracker(config.tracker)
        self.output = FixedLagOutput(fitter, config.tracker)

    @classmethod
    def from_config(cls, config: PipelineConfig) -> "FrameProcessor":
        """Load the body, fit preset, pose prior and networks that ``config`` names."""
        fitter, front_ends = load_models(config)
        return cls(config, fitter, front_ends)

    @property
    def needs_observations(self) -> bool:
        """True when a frame cannot be fitted without observations (ViTPose or CLIFF is not loaded)."""
        return self.front_ends.keypoints is None or self.front_ends.initial_smpl is None

    def process(self, frame: SensorFrame, should_stop=None) -> FrameOutcome:
        """The outcome of ``frame``; never raises for bad input (a SKIPPED outcome says why).

        should_stop: optional callable; when it turns true during the fit, :class:`FitCancelled` is
        raised between two optimizer steps (a node shutting down does not wait for the fit)."""
        start = time.perf_counter()
        if len(np.asarray(frame.cloud_lidar).reshape(-1)) == 0:
            return FrameOutcome.skipped("the point cloud has no valid points")
        if frame.observations is None and frame.boxes_xywh is None and self.needs_observations:
            return FrameOutcome.skipped("no observations for this frame (ViTPose and CLIFF are not both loaded, so "
                                        "keypoints and initial estimates must come with the frame)")
        try:
            observed = observe_frame(frame, self.config, self.front_ends, estimate_inits=False)
        except ValueError as error:
            return FrameOutcome.skipped(str(error))
        if observed.cloud_points[0] == 0:
            return FrameOutcome.skipped("the point cloud has no valid points")
        return self._fit_observed(observed, start, frame.stamp, frame.T_track_cam, should_stop)

    def process_observed(self, frame: FrameObservation, stamp: float, T_track_cam: Optional[np.ndarray] = None,
                         should_stop=None) -> FrameOutcome:
        """The outcome of a frame whose persons already carry their points and keypoints (a scene
        folder, a simulated sequence, a dataset). stamp: s; T_track_cam: (4, 4) camera -> tracking frame."""
        observed = ObservedFrame(frame, cloud_points=(0, 0))
        return self._fit_observed(observed, time.perf_counter(), stamp, T_track_cam, should_stop)

    def _complete_inits(self, observed: ObservedFrame):
        """CLIFF for the persons the tracked fit fits cold; returns (person, reason) for those left without."""
        def complete(persons):
            dropped: list = []
            complete_inits(persons, observed.frame.image, observed.frame.camera, self.front_ends,
                           observed.stage_seconds, dropped)
            return dropped
        return complete

    def _fit_observed(self, observed: ObservedFrame, start: float, stamp: float, T_track_cam=None,
                      should_stop=None) -> FrameOutcome:
        common = dict(cloud_points=observed.cloud_points, stamp=float(stamp),
                      T_track_cam=None if T_track_cam is None else np.asarray(T_track_cam, dtype=np.float64))
        fit_start, cliff_before = time.perf_counter(), observed.stage_seconds.get("initial_smpl", 0.0)
        tracked = fit_tracked_frame(observed.frame, self.fitter, self.tracker, self.config, stamp, T_track_cam,
                                    self._complete_inits(observed), should_stop)
        fit_seconds = time.perf_counter() - fit_start - (observed.stage_seconds.get("initial_smpl", 0.0) - cliff_before)
        stage_seconds = dict(observed.stage_seconds)
        dropped = list(observed.dropped) + tracked.dropped
        if tracked.result is None:
            stage_seconds["fit"] = fit_seconds
            stage_seconds["total"] = time.perf_counter() - start
            return FrameOutcome(FrameStatus.EMPTY, stage_seconds=stage_seconds, dropped=dropped, **common)
        stage_seconds.update(tracked.result.stage_seconds)
        stage_seconds["fit"] = fit_seconds
        stage_seconds["total"] = time.perf_counter() - start
        fit = FrameFit(tracked.frame, tracked.inputs, tracked.result)
        return FrameOutcome(FrameStatus.FITTED, fit=fit, tracks=tracked.tracks, stage_seconds=stage_seconds,
                            dropped=dropped, **common)
