"""``smplify3d bench --pipeline``: the whole frame of the node, timed stage by stage, per front-end choice.

A short simulated sequence (:class:`~smplify3d_core.sim.sequence.SequencePlan`, default 5 persons,
10 Hz, starting at the first frame from which every person stands in view for the whole run) goes
as :class:`~smplify3d_core.observe.SensorFrame` s (image, full LiDAR cloud, camera, extrinsic,
odom pose) through :meth:`FrameProcessor.process <smplify3d_core.pipeline.FrameProcessor.process>`,
the frame path the node runs: LiDAR person proposals, ViTPose keypoints, CLIFF initial SMPL (only
for the persons fitted cold), the tracked SMPLify-3D fit. For each ViTPose variant (S, B) and
CLIFF encoder (Res50, HR48) a fresh processor (tracking on) takes the frames in order, after one
warm-up frame through a throw-away processor, outside the timing:

* ``cold``: the first frame: every person is a new track, so CLIFF runs for all and every fit
  runs the full schedule;
* ``tracked``: the mean of the following frames (persons with a recent valid fit start warm from
  their tracks' predictions with the preset's tracking schedule; CLIFF runs only for the others);
  ``frames_per_second`` = 1 / its total.

Stages (seconds, from :attr:`FrameOutcome.stage_seconds <smplify3d_core.pipeline.FrameOutcome>`):
``proposals`` (ground fit, clustering, crops), ``keypoints`` (ViTPose), ``initial_smpl`` (CLIFF),
``fit`` (association, inputs, optimizer, verdict, restarts), ``other`` (the rest of the frame:
cloud checks, LiDAR visibility of the keypoints...) and ``total``; the five add up to ``total``.

The networks have random weights: the architecture, not the weights, sets their cost. Their
outputs are garbage, though — flat heatmaps (mean keypoint score about 0.06, so
``min_keypoint_score`` is set to 0 to keep the persons) and arbitrary bodies — so nearly every fit
fails the verdict, hardly a track has a valid fit to start warm from (the odd one that does fails its
warm fit and is restarted cold), and the tracked frames are fitted cold like the first one: with
``network_outputs="random"`` (the default) the tracked figures are what a frame costs when tracking
does not help. ``network_outputs="simulated"`` runs the
same networks on the same crops (timed in full) and then hands the fit the simulator's keypoints and
initial estimates of the person whose box overlaps each proposal most, as trained networks would
roughly give: the fits pass the verdict, the persons are tracked warm and the tracked figures show
the steady state. ``warm_fits``, ``cold_fits`` and ``restarts`` (over the tracked frames) say which
happened. On a GPU the stage times are taken without synchronizing, so a stage may carry the tail of
the previous one's kernels (the totals are right).
"""
from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, replace
from typing import List, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from smplify3d_core.models import CLIFF_ENCODER_LABELS, FrontEnds, build_fitter
from smplify3d_core.observe import SensorFrame
from smplify3d_core.pipeline import FrameProcessor, FrameStatus
from smplify3d_core.pipeline_config import PipelineConfig
from smplify3d_core.tracking import box_iou

#: (ViTPose variant, CLIFF encoder) pairs timed by default; ``--quick`` times the first.
COMBINATIONS: Tuple[Tuple[str, str], ...] = (("s", "res50"), ("s", "hr48"), ("b", "res50"), ("b", "hr48"))
#: The reported stages, in order; they add up to the frame's ``total``.
STAGES = ("proposals", "keypoints", "initial_smpl", "fit", "other")
NETWORK_OUTPUTS = ("random", "simulated")
#: A person counts as in view when its pelvis is this far inside the horizontal field of view, m.
VIEW_MARGIN_M = 0.3


@dataclass
class PipelineBenchSettings:
    """What ``bench --pipeline`` runs.

    persons: simulated persons; frames: timed frames per combination (the cold one, then
    ``frames - 1`` tracked ones; at least 2); fps: frame rate of the sequence, Hz; preset: sensor
    preset name or :class:`~smplify3d_core.sim.presets.SimPreset`; seed: the sequence's seed (and the
    networks' random weights); flip_test: ViTPose averages with the mirrored crop (2x its cost);
    network_outputs: "random" or "simulated" (see the module docstring); combinations: (ViTPose
    variant, CLIFF encoder) pairs.
    """

    persons: int = 5
    frames: int = 6
    fps: float = 10.0
    preset: object = "humanm3"
    seed: int = 0
    flip_test: bool = False
    network_outputs: str = "random"
    combinations: Sequence[Tuple[str, str]] = COMBINATIONS

    def __post_init__(self) -> None:
        if self.frames < 2:
            raise ValueError(f"bench --pipeline needs at least 2 frames (one cold, one tracked), got {self.frames}")
        if self.persons < 1:
            raise ValueError(f"bench --pipeline needs at least one person, got {self.persons}")
        if self.network_outputs not in NETWORK_OUTPUTS:
            raise ValueError(f"network_outputs must be one of {NETWORK_OUTPUTS}, got {self.network_outputs!r}")


class SimulatedOutputs:
    """A front-end run in full whose outputs are then replaced by the simulator's.

    estimator: a :class:`~smplify3d_core.perception.pose2d.KeypointEstimator` or
    :class:`~smplify3d_core.perception.cliff.CliffEstimator`; field: ``"keypoints"`` ((17, 3) px,
    score) or ``"init"`` (SMPLParams, camera frame) of the simulated persons. Set ``persons`` to the
    frame's simulated persons before each frame: each box gets the field of the person whose true
    box overlaps it most (IoU > 0.3); other boxes keep the network's output. Attributes not defined
    here are the estimator's (``model``, ``flip_test``).
    """

    def __init__(self, estimator, field: str) -> None:
        self.estimator = estimator
        self.field = field
        self.persons: list = []

    def __getattr__(self, name):
        return getattr(self.__dict__["estimator"], name)

    def __call__(self, image, boxes, *args):
        outputs = self.estimator(image, boxes, *args)
        for i, box in enumerate(np.asarray(boxes, dtype=np.float64)):
            overlaps = [box_iou(box, np.asarray(p.bbox_xywh, dtype=np.float64)) for p in self.persons]
            if overlaps and max(overlaps) > 0.3:
                outputs[i] = copy.deepcopy(getattr(self.persons[int(np.argmax(overlaps))], self.field))
        return outputs


def persons_in_view(plan, index: int) -> int:
    """How many of ``plan``'s persons stand in front of the camera at frame ``index`` with the pelvis
    ``VIEW_MARGIN_M`` inside the horizontal field of view (no rendering)."""
    _, placements = plan.placements(plan.stamp(index))
    return sum(abs(p.lateral) + VIEW_MARGIN_M < p.distance * plan.tan_half for p in placements)


def first_full_window(plan, persons: int, frames: int, search: int = 300) -> int:
    """The first frame index from which ``persons`` persons are in view (:func:`persons_in_view`) for
    ``frames`` frames in a row; 0 when there is none among the first ``search`` frames."""
    run = 0
    for index in range(search + frames):
        run = run + 1 if persons_in_view(plan, index) >= persons else 0
        if run == frames:
            return index - frames + 1
    return 0


def frame_stages(stage_seconds: dict) -> dict:
    """{stage: s} of :data:`STAGES` and ``total`` from a frame outcome's ``stage_seconds``; ``other`` is
    the part of the total outside the four measured stages."""
    stages = {k: float(stage_seconds.get(k, 0.0)) for k in STAGES[:-1]}
    total = float(stage_seconds["total"])
    stages["other"] = total - sum(stages.values())
    stages["total"] = total
    return stages


def _mean_stages(rows: List[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def simulate_frames(body, settings: PipelineBenchSettings, progress: bool = False):
    """(the first frame index, the rendered :class:`~smplify3d_core.sim.sequence.SequenceFrame` s)."""
    from smplify3d_core.sim.sequence import SequencePlan, SequenceSettings

    plan = SequencePlan(SequenceSettings(persons=settings.persons, frames=settings.frames, fps=settings.fps,
                                         preset=settings.preset, seed=settings.seed), body)
    start = first_full_window(plan, settings.persons, settings.frames)
    frames = [plan.simulate_frame(start + k) for k in tqdm(range(settings.frames), desc="simulating", unit="frame",
                                                             file=sys.stderr, disable=not progress, leave=False)]
    return start, frames


def sensor_frame(frame) -> SensorFrame:
    """What the node hands the frame path for a simulated frame: image, full cloud, camera, odom pose."""
    f = frame.scene.frame
    return SensorFrame(f.image, f.cloud_lidar, f.camera, f.T_cam_lidar, stamp=frame.stamp, sequence=f.sequence,
                       frame_id=f.frame_id, T_track_cam=frame.T_odom_cam)


def build_front_ends(variant: str, encoder: str, device, flip_test: bool, seed: int = 0,
                     simulated: bool = False) -> FrontEnds:
    """Random-weight ViTPose-``variant`` and CLIFF-``encoder`` estimators as :func:`~smplify3d_core.models.load_front_ends`
    builds them from checkpoints (wrapped in :class:`SimulatedOutputs` when ``simulated``)."""
    from smplify3d_core.perception.cliff import CLIFF, CliffEstimator
    from smplify3d_core.perception.pose2d import KeypointEstimator
    from smplify3d_core.perception.vitpose import build_vitpose

    torch.manual_seed(seed)
    keypoints = KeypointEstimator(build_vitpose(variant), device=device, flip_test=flip_test)
    initial_smpl = CliffEstimator(CLIFF(encoder), device=device)
    if simulated:
        return FrontEnds(SimulatedOutputs(keypoints, "keypoints"), SimulatedOutputs(initial_smpl, "init"))
    return FrontEnds(keypoints, initial_smpl)


def _process(processor: FrameProcessor, frame):
    for estimator in (processor.front_ends.keypoints, processor.front_ends.initial_smpl):
        if isinstance(estimator, SimulatedOutputs):
            estimator.persons = frame.scene.frame.persons
    outcome = processor.process(sensor_frame(frame))
    if outcome.status is FrameStatus.SKIPPED:
        raise RuntimeError(f"simulated frame {frame.index} was skipped: {outcome.reason}")
    return outcome


def time_combination(frames, config: PipelineConfig, fitter, front_ends: FrontEnds, bar=None) -> dict:
    """One row of the report: the frames through a fresh processor after one warm-up frame."""
    _process(FrameProcessor(config, fitter, front_ends), frames[0])  # warm-up; its processor's tracks are thrown away
    if bar is not None:
        bar.update(1)
    processor = FrameProcessor(config, fitter, front_ends)
    stages, fitted, counts = [], [], {"warm_fits": 0, "cold_fits": 0, "restarts": 0, "valid_fits": 0}
    for k, frame in enumerate(frames):
        outcome = _process(processor, frame)
        stages.append(frame_stages(outcome.stage_seconds))
        fitted.append(len(outcome.tracks))
        if k > 0:
            for track in outcome.tracks:
                counts["warm_fits" if track.warm_started else "cold_fits"] += 1
                counts["restarts"] += int(track.restarted)
            if outcome.fit is not None:
                counts["valid_fits"] += int(outcome.fit.result.valid.sum())
        if bar is not None:
            bar.update(1)
    tracked = _mean_stages(stages[1:])
    return {"cold": stages[0], "tracked": tracked, "frames_per_second": 1.0 / tracked["total"], **counts,
            "persons_fitted": fitted, "persons_in_view": [len(f.scene.frame.persons) for f in frames]}


def run_pipeline_bench(body, fit_config, settings: PipelineBenchSettings, device="cpu", progress: bool = True) -> dict:
    """The ``out["pipeline"]`` report: settings, then one row per (ViTPose, CLIFF) combination with
    ``cold`` and ``tracked`` {stage: s}, ``frames_per_second`` and the fit counts of the tracked frames."""
    device = torch.device(device)
    start, frames = simulate_frames(body, settings, progress)
    simulated = settings.network_outputs == "simulated"
    # random heatmaps are flat (mean score ~0.06): keep their persons, or nothing would be fitted
    config = replace(PipelineConfig(), device=str(device), flip_test=bool(settings.flip_test),
                     seed=int(settings.seed), **({} if simulated else {"min_keypoint_score": 0.0}))
    fitter = build_fitter(body, fit_config, device=str(device), seed=settings.seed)
    rows = []
    bar = tqdm(total=len(settings.combinations) * (len(frames) + 1), desc="pipeline", unit="frame", file=sys.stderr,
               disable=not progress, leave=False, dynamic_ncols=True)
    wall = time.perf_counter()
    with bar:
        for variant, encoder in settings.combinations:
            bar.set_postfix_str(f"ViTPose-{variant.upper()} + CLIFF-{CLIFF_ENCODER_LABELS.get(encoder, encoder)}")
            front_ends = build_front_ends(variant, encoder, device, settings.flip_test, settings.seed, simulated)
            rows.append({"vitpose": variant.upper(), "cliff": encoder,
                         **time_combination(frames, config, fitter, front_ends, bar)})
            front_ends = None  # free the networks before building the next ones
    preset = settings.preset if isinstance(settings.preset, str) else settings.preset.name
    return {"device": str(device), "torch_threads": torch.get_num_threads(), "persons": settings.persons,
            "flip_test": bool(settings.flip_test), "network_outputs": settings.network_outputs,
            "sensor": preset, "seed": settings.seed,
            "fps": settings.fps, "first_frame": start, "frames": settings.frames,
            "min_keypoint_score": config.min_keypoint_score, "wall_s": time.perf_counter() - wall, "rows": rows}


def print_pipeline_report(report: dict, out=None) -> None:
    """The report as a table to ``out`` (default stdout): per combination, the cold frame's and the
    tracked frames' stage seconds."""
    def p(line=""):
        print(line, file=out or sys.stdout)

    last = report["first_frame"] + report["frames"] - 1
    outputs = ("their own outputs (garbage)" if report["network_outputs"] == "random"
               else "the simulator's keypoints and initial estimates in place of their outputs")
    p(f"whole-frame speed: {report['persons']} simulated persons ({report['sensor']} sensor, seed {report['seed']}, "
      f"frames {report['first_frame']}-{last} at {report['fps']:g} Hz), random-weight networks with {outputs}, "
      f"flip test {'on' if report['flip_test'] else 'off'}, device {report['device']}, "
      f"torch threads {report['torch_threads']}")
    p(f"seconds per frame (cold: the first frame, every person new; tracked: mean of the {report['frames'] - 1} "
      "following frames); fits warm/cold/restarted and valid over the tracked frames")
    head = " ".join(f"{s:>12}" for s in STAGES + ("total",))
    p(f"  {'ViTPose':7} {'CLIFF':6} {'frame':7} {head} {'frames/s':>9} {'warm/cold/restart':>17} {'valid':>7}")
    for row in report["rows"]:
        name = (row["vitpose"], CLIFF_ENCODER_LABELS.get(row["cliff"], row["cliff"]))
        for kind in ("cold", "tracked"):
            cells = " ".join(f"{row[kind][s]:12.3f}" for s in STAGES + ("total",))
            tail = ""
            if kind == "tracked":
                fits = f"{row['warm_fits']}/{row['cold_fits']}/{row['restarts']}"
                valid = f"{row['valid_fits']}/{row['warm_fits'] + row['cold_fits']}"
                tail = f" {row['frames_per_second']:9.3f} {fits:>17} {valid:>7}"
            p(f"  {name[0] if kind == 'cold' else '':7} {name[1] if kind == 'cold' else '':6} {kind:7} {cells}{tail}")
    p("persons fitted per frame: " + "; ".join(f"{r['vitpose']}+{r['cliff']} {r['persons_fitted']}"
                                               for r in report["rows"]) +
      f" (in view: {report['rows'][0]['persons_in_view'] if report['rows'] else []})")
    if report["network_outputs"] == "random":
        p("random outputs: the fits fail the verdict, so the tracks do not start warm and the tracked frames cost what "
          "cold ones do; --network-outputs simulated shows the steady state of a tracked stream")


def pipeline_bench_command(args) -> int:
    """``smplify3d bench --pipeline`` from the parsed arguments: run, print, write ``--json``."""
    from smplify3d_core.bench.report import write_json_report
    from smplify3d_core.body.default_model import default_body_model_dir
    from smplify3d_core.body.model import SMPLBody
    from smplify3d_core.fit.config import load_fit_config
    from smplify3d_core.models import resolve_device

    quick = bool(args.quick)
    settings = PipelineBenchSettings(
        persons=args.persons if args.persons is not None else 5,
        frames=args.frames if args.frames is not None else (3 if quick else 6), fps=args.fps, preset=args.sensor,
        seed=args.seed, flip_test=bool(args.flip_test), network_outputs=args.network_outputs,
        combinations=COMBINATIONS[:1] if quick else COMBINATIONS)
    body = SMPLBody.from_path(args.smpl_model_path or default_body_model_dir(), gender=args.gender)
    report = run_pipeline_bench(body, load_fit_config(args.preset or args.sensor), settings,
                                device=resolve_device(args.device), progress=not args.no_progress)
    report["fit_preset"] = args.preset or args.sensor
    print_pipeline_report(report)
    if args.json:
        write_json_report(args.json, {"pipeline": report})
    return 0
