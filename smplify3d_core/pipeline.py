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

import enum
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import torch

from smplify3d_core.fit.inputs import FitInputs
from smplify3d_core.fit.optimizer import FitCancelled, FitResult, SMPLify3D  # noqa: F401  (FitCancelled: raised by process)
from smplify3d_core.fit.verdict import VerdictConfig, apply_verdict
from smplify3d_core.models import FrontEnds, load_models
from smplify3d_core.observe import ObservedFrame, SensorFrame, observe_frame
from smplify3d_core.pipeline_config import PipelineConfig
from smplify3d_core.tracking import PelvisTracker
from smplify3d_core.types import FrameObservation


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
    start = time.perf_counter()
    with torch.no_grad():
        rest = fitter.body(betas=result.betas.to(fitter.device, fitter.body.v_template.dtype)).vertices
    apply_verdict(result, inputs, rest, verdict or VerdictConfig())
    result.stage_seconds["verdict"] = time.perf_counter() - start
    return FrameFit(frame, inputs, result)


class FrameStatus(enum.Enum):
    """What became of a frame: nobody to fit, not usable (with a reason), or fitted."""

    EMPTY = "empty"
    SKIPPED = "skipped"
    FITTED = "fitted"


@dataclass
class FrameOutcome:
    """The outcome of one frame.

    status: :class:`FrameStatus`; reason: why it was skipped (SKIPPED only).
    fit: the fitted and judged persons (FITTED only); track_ids: one id per fitted person (a person
        that is not valid — not fitted, or rejected by the verdict — gets a new id and starts no track).
    dropped: (person, reason) of the candidates that were not fitted (weak keypoints, beyond
        ``max_persons``...); stage_seconds: wall time per stage, s, with ``total``.
    cloud_points: (valid points, points used): fewer used when the cloud was thinned.
    """

    status: FrameStatus
    reason: Optional[str] = None
    fit: Optional[FrameFit] = None
    track_ids: List[int] = field(default_factory=list)
    dropped: List[Tuple[str, str]] = field(default_factory=list)
    stage_seconds: dict = field(default_factory=dict)
    cloud_points: Tuple[int, int] = (0, 0)

    @classmethod
    def skipped(cls, reason: str) -> "FrameOutcome":
        return cls(FrameStatus.SKIPPED, reason=str(reason))


class FrameProcessor:
    """Fits and tracks the persons of a stream of frames (one instance per stream: it keeps the tracks).

    config: the frame path's settings; fitter: the SMPLify-3D optimizer; front_ends: ViTPose /
    CLIFF (either None: those come from each frame's observations).
    """

    def __init__(self, config: PipelineConfig, fitter: SMPLify3D, front_ends: Optional[FrontEnds] = None) -> None:
        self.config = config
        self.fitter = fitter
        self.front_ends = front_ends or FrontEnds()
        self.tracker = PelvisTracker(config.tracker.max_distance, config.tracker.max_missed)

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
            observed = observe_frame(frame, self.config, self.front_ends)
        except ValueError as error:
            return FrameOutcome.skipped(str(error))
        if observed.cloud_points[0] == 0:
            return FrameOutcome.skipped("the point cloud has no valid points")
        return self._fit_observed(observed, start, should_stop)

    def _fit_observed(self, observed: ObservedFrame, start: float, should_stop=None) -> FrameOutcome:
        stage_seconds = dict(observed.stage_seconds)
        common = dict(dropped=observed.dropped, cloud_points=observed.cloud_points)
        if not observed.frame.persons:
            self.tracker.update(np.zeros((0, 3)))
            stage_seconds["total"] = time.perf_counter() - start
            return FrameOutcome(FrameStatus.EMPTY, stage_seconds=stage_seconds, **common)
        fit = fit_frame(observed.frame, self.fitter, self.config.verdict, should_stop)
        stage_seconds.update(fit.result.stage_seconds)
        stage_seconds["total"] = time.perf_counter() - start
        return FrameOutcome(FrameStatus.FITTED, fit=fit, track_ids=self.track(fit), stage_seconds=stage_seconds,
                            **common)

    def track(self, fit: FrameFit) -> List[int]:
        """Track ids of the fitted persons (pelvis association; a person not fitted gets a new id)."""
        valid = fit.result.valid.cpu().numpy().astype(bool)
        pelvis = fit.result.joints[:, 0].detach().cpu().numpy().astype(np.float64)
        return self.tracker.update(np.where(valid[:, None], pelvis, np.nan))
