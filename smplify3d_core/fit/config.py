"""Fitting configuration: the presets in ``config/*.yaml`` as typed dataclasses.

Every key is documented in the YAML files; unknown keys are an error so that a typo does not
silently fall back to a default.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, asdict
from pathlib import Path
from typing import Optional

import yaml

PRESETS = ("demo", "humanm3", "sloper4d", "facing")


def config_dir() -> Path:
    """Folder of the YAML files (fit presets, ``pipeline.yaml``).

    ``$SMPLIFY3D_CONFIG_DIR`` when set; else ``config/`` of the source checkout (pip install -e);
    else ``<prefix>/share/smplify3d_ros/config`` of a colcon / CMake install, found from this
    file's location (``<prefix>/lib/pythonX.Y/site-packages/smplify3d_core/fit/config.py``).
    """
    import os

    if os.environ.get("SMPLIFY3D_CONFIG_DIR"):
        return Path(os.environ["SMPLIFY3D_CONFIG_DIR"])
    here = Path(__file__).resolve()
    checkout = here.parents[2] / "config"
    if checkout.is_dir():
        return checkout
    installed = here.parents[5] / "share" / "smplify3d_ros" / "config" if len(here.parents) > 5 else checkout
    return installed if installed.is_dir() else checkout


@dataclass
class IcpConfig:
    enabled: bool = True
    iterations: int = 100
    tolerance_m: float = 1e-4
    keep_rotation: bool = False
    max_distance_m: Optional[float] = None


@dataclass
class Stage1Config:
    iterations: int = 20
    sigma_px: float = 100.0
    shape_weight: float = 17.5


@dataclass
class Stage2Config:
    iterations: int = 50
    sigma_px: float = 100.0
    pose_weight: float = 3.0
    angle_weight: float = 1.0
    shape_weight: float = 17.5
    pointcloud_weight: float = 600.0
    deviation_weight: float = 135.0


@dataclass
class Stage3Config:
    iterations: int = 20
    sigma_px: float = 50.0
    pointcloud_weight: float = 1500.0
    shape_weight: float = 0.0


@dataclass
class TrackingFitConfig:
    """The reduced schedule of a warm-started fit (a tracked person starting from its prediction)."""

    icp_residual_m: float = 0.05
    icp_iterations: int = 30
    stage2_iterations: int = 10
    settled_stage2_iterations: int = 4
    surface_vertices: int = 1000
    stage3_iterations: int = 2
    learning_rate: float = 0.015
    temporal_pose_weight: float = 30.0
    temporal_transl_weight: float = 300.0
    shape_fit_iterations: int = 30
    shape_fit_learning_rate: float = 0.03
    shape_fit_pointcloud_weight: float = 0.0
    shape_fit_dot_product_threshold: float = 0.3


@dataclass
class FitConfig:
    joint_conf_threshold: float = 0.6
    dot_product_threshold: float = -1.0
    learning_rate: float = 0.01
    visibility_filter: bool = True
    use_lidar: bool = True
    min_lidar_points: int = 10
    nearest_neighbours: str = "auto"
    subset_skinning: bool = True
    visible_surface_refresh_steps: int = 1
    pose_prior_path: Optional[str] = None
    icp: IcpConfig = field(default_factory=IcpConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    stage3: Stage3Config = field(default_factory=Stage3Config)
    tracking: TrackingFitConfig = field(default_factory=TrackingFitConfig)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "FitConfig":
        nested = {"icp": IcpConfig, "stage1": Stage1Config, "stage2": Stage2Config, "stage3": Stage3Config,
                  "tracking": TrackingFitConfig}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown keys {unknown}; valid keys are {sorted(known)}")
        values = {}
        for key, value in data.items():
            if key in nested:
                sub_known = {f.name for f in fields(nested[key])}
                bad = sorted(set(value or {}) - sub_known)
                if bad:
                    raise ValueError(f"{source}: unknown keys {bad} under {key!r}; valid keys are {sorted(sub_known)}")
                values[key] = nested[key](**(value or {}))
            else:
                values[key] = value
        config = cls(**values)
        if int(config.visible_surface_refresh_steps) < 1:
            raise ValueError(f"{source}: visible_surface_refresh_steps must be at least 1, got "
                             f"{config.visible_surface_refresh_steps!r}")
        if int(config.tracking.surface_vertices) < 1:
            raise ValueError(f"{source}: tracking.surface_vertices must be at least 1 (2000 or more: the whole uniform "
                             f"subset), got {config.tracking.surface_vertices!r}")
        if config.nearest_neighbours not in ("auto", "kdtree", "brute"):
            raise ValueError(f"{source}: nearest_neighbours must be auto, kdtree or brute, got {config.nearest_neighbours!r}")
        return config

    @classmethod
    def from_yaml(cls, path) -> "FitConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"fit config {path} does not exist; presets: {', '.join(PRESETS)} in {config_dir()}")
        return cls.from_dict(yaml.safe_load(path.read_text()) or {}, source=str(path))

    @classmethod
    def preset(cls, name: str) -> "FitConfig":
        """Load ``config/<name>.yaml`` (demo, humanm3, sloper4d, facing)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")
        return cls.from_yaml(config_dir() / f"{name}.yaml")

    def to_dict(self) -> dict:
        return asdict(self)


def load_fit_config(name_or_path: Optional[str]) -> FitConfig:
    """A preset name, a YAML path, or None (the demo preset)."""
    if name_or_path is None:
        return FitConfig.preset("demo")
    if name_or_path in PRESETS:
        return FitConfig.preset(name_or_path)
    return FitConfig.from_yaml(name_or_path)
