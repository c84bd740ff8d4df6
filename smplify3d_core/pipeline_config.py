"""The settings of the frame path, in one typed tree: models, perception, proposals, tracker, verdict, limits.

:class:`PipelineConfig` is what the node, ``smplify3d-bag process`` and the ``smplify3d`` CLI
build their frame processing from. Each setting has one name everywhere: the dotted name is the
ROS parameter (``max_persons``, ``proposals.cluster_distance``), the ``--set NAME=VALUE`` option
of the command-line tools, and the key in ``config/pipeline.yaml`` (nested under its section);
the top-level ones also have a flag of their own (``--max-persons``). The fit itself is chosen by
``preset``: a name in ``config/`` (demo, humanm3, sloper4d, facing) or a YAML path, read as
:class:`~smplify3d_core.fit.config.FitConfig`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from smplify3d_core.fit.config import config_dir
from smplify3d_core.fit.verdict import VerdictConfig
from smplify3d_core.geometry.visibility import DEFAULT_LIDAR_KERNEL_PX
from smplify3d_core.perception.proposal_config import ProposalConfig
from smplify3d_core.typed_config import ConfigError, section, section_from_dict, setting


@dataclass
class TrackerConfig:
    """Tracking persons across frames (in ``tracking_frame`` on a robot) and warm-started fits."""

    warm_start: bool = setting(True, "fit a tracked person from its track's prediction with the preset's tracking "
                                     "schedule (false: every person of every frame is fitted cold)")
    max_distance: float = setting(1.0, "association gate: metres between a person's LiDAR points and a track's "
                                       "predicted position (widened while the track goes unseen)", min=0.05)
    max_age: float = setting(1.0, "seconds a track survives without being seen (short occlusions keep the id)",
                             min=0)
    min_missed_frames: int = setting(1, "frames in a row a track must go unmatched before max_age can end it (a node "
                                        "whose frames come further apart than max_age keeps its ids)", min=0)
    box_weight: float = setting(0.5, "weight of (1 - box IoU) against the normalised 3D distance in association",
                                min=0)
    max_warm_gap: float = setting(0.35, "seconds since a track's last valid fit beyond which it is fitted cold "
                                        "again", min=0)
    acceleration_noise: float = setting(3.0, "motion filter: standard deviation of a person's acceleration, m/s^2",
                                        min=0.01)
    position_noise: float = setting(0.05, "motion filter: standard deviation of a fitted pelvis position, m",
                                    min=0.001)
    pose_extrapolation: float = setting(1.0, "fraction of the pose filter's rate carried into the predicted pose "
                                             "(0: the filtered pose as it is)", min=0, max=1)
    pose_alpha: float = setting(0.85, "pose filter: share of a fit's deviation from the predicted pose taken into the "
                                     "track's pose (1: the fit itself)", min=0.05, max=1)
    pose_beta: float = setting(0.5, "pose filter: share of that deviation per frame interval taken into the pose "
                                    "rate (1: the last frame-to-frame change)", min=0, max=1)
    smooth_output: bool = setting(True, "publish a tracked person's body with the filtered pelvis (motion filter) "
                                        "and filtered pose (pose filter) instead of the frame's raw fit")
    max_smoothing_offset: float = setting(0.2, "metres a joint of the smoothed body may lie from the raw fit's; "
                                               "farther: the raw fit is published and the pose filter reset to it",
                                          min=0)
    output_lag_frames: int = setting(1, "1: publish each frame one fitted frame late, a tracked person's body averaged "
                                        "with its bodies in the frames before and after (at the frame's stamp; "
                                        "less jitter, one frame interval of latency); 0: publish each frame as soon "
                                        "as it is fitted", min=0, max=1)
    anchor_to_observation: bool = setting(True, "a warm fit keeps the joints the image does not show near the "
                                                "frame's own image-only estimate when the observations carry one "
                                                "(else near the track's pose, which can drift)")
    warm_pose: str = setting("observation", "where a warm fit's body pose starts: the track's prediction, or the "
                                      "frame's own image-only estimate when the observations carry one",
                             choices=("track", "observation"))
    shape_frames: int = setting(10, "valid fits that show the whole person fused into a track's shape (then one "
                                    "shape is fitted to them together, the preset's tracking.shape_fit_* keys); after "
                                    "that the shape is held fixed", min=1)
    shape_border_px: float = setting(2.0, "a fit whose person box comes within this many pixels of the image border "
                                          "(a person the image cuts off) is not fused into its track's shape", min=0)
    restart_on_invalid: bool = setting(True, "a warm fit that fails the verdict is fitted again cold in the same "
                                             "frame (flag track_restarted)")


@dataclass
class PipelineConfig:
    """Every tunable of the per-frame path (see the module docstring for the names)."""

    preset: str = setting("facing", "fit preset: demo, humanm3, sloper4d, facing (humanm3 weights, sensor-facing "
                                     "surface, lighter shape prior), or a fit YAML file")
    device: str = setting("auto", "auto (cuda when available), cpu, cuda or cuda:N")
    smpl_model_path: str = setting("", "SMPL model file or folder; empty: the synthetic SMPL-format model")
    gender: str = setting("neutral", "body model gender", choices=("neutral", "male", "female"))
    vitpose_checkpoint: str = setting("", "ViTPose weights (mmpose 1.x or official layout); empty: keypoints from "
                                          "observations only")
    cliff_checkpoint: str = setting("", "CLIFF weights (hr48 or res50 release); empty: initial estimates from "
                                        "observations only")
    flip_test: bool = setting(True, "average ViTPose with its horizontally flipped input (2x the keypoint cost)")
    min_keypoint_score: float = setting(0.3, "a person whose mean ViTPose keypoint score is below this is dropped",
                                        min=0, max=1)
    lidar_kernel_px: int = setting(DEFAULT_LIDAR_KERNEL_PX, "dilation of the per-keypoint LiDAR visibility mask, pixels",
                                   min=1, max=1000)
    max_persons: int = setting(8, "the nearest persons kept per frame", min=1, max=64)
    max_cloud_points: int = setting(300000, "larger clouds are thinned to every k-th point before use", min=1000)
    max_point_range_m: float = setting(500.0, "points farther than this from the LiDAR are invalid (m); a cloud whose "
                                              "finite points mostly are is skipped (not in metres?)", min=1.0)
    seed: int = setting(0, "seed of the optimizer (same inputs and seed, same fit)", min=0)
    proposals: ProposalConfig = section(ProposalConfig, "LiDAR person proposals and crops (metres, pixels, degrees as named)")
    tracker: TrackerConfig = section(TrackerConfig, "tracks across frames and warm-started fits")
    verdict: VerdictConfig = section(VerdictConfig, "when a fitted body is valid: thresholds of the checks after the fit")

    @classmethod
    def from_dict(cls, data: Optional[dict], source: str = "pipeline config") -> "PipelineConfig":
        """From a nested mapping (unknown keys and invalid values are a :class:`ConfigError`)."""
        return section_from_dict(cls, data, source)

    @classmethod
    def from_yaml(cls, path) -> "PipelineConfig":
        """From a YAML file: a plain mapping (``config/pipeline.yaml``) or a ROS 2 parameters file
        (``<node name>: ros__parameters: ...``) holding only pipeline settings."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"pipeline config {path} does not exist (the default is {default_pipeline_yaml()})")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({error})") from error
        return cls.from_dict(ros_parameters_section(data), source=str(path))


def ros_parameters_section(data: dict) -> dict:
    """The ``ros__parameters`` mapping of a ROS 2 parameters file with one node, else ``data`` itself."""
    if isinstance(data, dict) and len(data) == 1:
        (inner,) = data.values()
        if isinstance(inner, dict) and set(inner) == {"ros__parameters"}:
            return inner["ros__parameters"] or {}
    return data


def default_pipeline_yaml() -> Path:
    """``config/pipeline.yaml``: the documented defaults of :class:`PipelineConfig`."""
    return config_dir() / "pipeline.yaml"


# ------------------------------------------------------------------------- command-line surface
def add_pipeline_arguments(parser, skip: tuple = ()) -> None:
    """The frame path's settings as options of a command (``smplify3d fit/eval/keypoints``,
    ``smplify3d-bag process``): ``--params FILE``, ``--set NAME=VALUE`` and one flag per top-level
    setting named like the ROS parameter (``max_persons`` -> ``--max-persons``). Flags left out
    keep the file's value (or the default). ``skip``: top-level settings the command does not use.
    """
    import argparse

    from smplify3d_core.typed_config import flatten_fields

    group = parser.add_argument_group("frame path settings (ROS parameter names; see config/pipeline.yaml)")
    group.add_argument("--params", default=None, metavar="FILE",
                       help="settings file: config/pipeline.yaml layout, or a ROS 2 params file such as "
                            "config/robot.yaml (its ROS-only keys are ignored)")
    group.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                       help="any setting by its dotted name, e.g. --set proposals.cluster_distance=0.3 (repeatable)")
    for spec in flatten_fields(PipelineConfig):
        if len(spec.path) != 1 or spec.name in skip:
            continue
        flag = "--" + spec.name.replace("_", "-")
        help_text = f"{spec.doc} (default {spec.default!r})"
        if spec.kind == "bool":
            group.add_argument(flag, dest=spec.name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)
        else:
            kind = {"int": int, "float": float}.get(spec.kind, str)
            group.add_argument(flag, dest=spec.name, type=kind, default=None, choices=spec.choices, help=help_text)


def pipeline_config_from_args(args, defaults: Optional[dict] = None, ignore_keys: tuple = ()) -> PipelineConfig:
    """The settings an invocation asks for: defaults < ``--params`` file < ``--set`` < flags.

    defaults: top-level settings this command defaults differently (e.g. the dataset's preset);
    ignore_keys: keys of a ROS params file that belong to the node, not to the frame path.
    """
    from smplify3d_core.typed_config import flatten_fields, parse_override, with_overrides

    config = PipelineConfig.from_dict(defaults or {}, source="defaults")
    if getattr(args, "params", None):
        path = Path(args.params)
        if not path.is_file():
            raise FileNotFoundError(f"--params {path} does not exist")
        data = ros_parameters_section(yaml.safe_load(path.read_text()) or {})
        data = {k: v for k, v in data.items() if k not in ignore_keys}
        merged = {**(defaults or {}), **data}
        config = PipelineConfig.from_dict(merged, source=str(path))
    overrides = dict(parse_override(text) for text in getattr(args, "overrides", []) or [])
    for spec in flatten_fields(PipelineConfig):
        if len(spec.path) == 1 and getattr(args, spec.name, None) is not None:
            overrides[spec.name] = getattr(args, spec.name)
    return with_overrides(config, overrides, source="command line") if overrides else config
