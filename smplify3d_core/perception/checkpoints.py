"""Loading the published ViTPose and CLIFF checkpoints safely.

Files are read with ``torch.load(weights_only=True)``; mmpose checkpoints keep numpy arrays
and scalars in their ``meta`` entry, so exactly those numpy types are allowed (never a blanket
``weights_only=False``). A missing or malformed file gives an error naming the expected file,
where it is published and the configuration key / ROS parameter that points at it.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class CheckpointSpec:
    """What a checkpoint should be: for messages and for finding its weights."""

    name: str           # e.g. "ViTPose-B (mmpose 1.x)"
    example_file: str   # a published file name
    published_at: str   # where users download it
    config_key: str     # the config key / ROS parameter that holds its path


VITPOSE_SPEC = CheckpointSpec(
    name="ViTPose (mmpose 1.x top-down heatmap checkpoint, COCO 256x192)",
    example_file="td-hm_ViTPose-base_8xb64-210e_coco-256x192-216eae50_20230314.pth",
    published_at="the mmpose model zoo (https://mmpose.readthedocs.io, body 2D keypoint > ViTPose) "
                 "or the official ViTPose repository (https://github.com/ViTAE-Transformer/ViTPose)",
    config_key="vitpose_checkpoint (ROS parameter; --vitpose-checkpoint on the command line)",
)
CLIFF_SPEC = CheckpointSpec(
    name="CLIFF (HRNet-W48 or ResNet-50 encoder)",
    example_file="hr48-PA43.0_MJE69.0_MVE81.2_3dpw.pt or res50-PA45.7_MJE72.0_MVE85.3_3dpw.pt",
    published_at="the CLIFF repository's release (https://github.com/haofanwang/CLIFF, 'Pretrained models')",
    config_key="cliff_checkpoint (ROS parameter; --cliff-checkpoint on the command line)",
)


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not the expected network."""


def _numpy_safe_globals() -> list:
    """The numpy types mmpose/CLIFF checkpoints pickle in their metadata."""
    allowed = [np.dtype, np.ndarray]
    core = getattr(np, "_core", None) or np.core
    allowed.append(core.multiarray._reconstruct)
    allowed.append(core.multiarray.scalar)
    for name in ("float64", "float32", "int64", "int32", "bool_", "str_"):
        allowed.append(getattr(np, name))
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType", "StrDType", "ObjectDType"):
        dtype_class = getattr(np.dtypes, name, None)
        if dtype_class is not None:
            allowed.append(dtype_class)
    return allowed


def read_checkpoint(path, spec: CheckpointSpec) -> dict:
    """Read a checkpoint file as a dict (weights_only with the needed numpy types allowed)."""
    path = Path(path).expanduser() if path else None
    if path is None or not path.is_file():
        raise CheckpointError(
            f"{spec.name} checkpoint not found: {path if path else '(no path given)'}. "
            f"Expected a file like {spec.example_file}, published at {spec.published_at}. "
            f"Set {spec.config_key} to its path."
        )
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(
            f"could not read {spec.name} checkpoint {path}: {error}. Expected a file like {spec.example_file} "
            f"from {spec.published_at} ({spec.config_key})."
        ) from error
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a checkpoint dict ({spec.name})")
    return payload


def load_state_dict_strict(module: torch.nn.Module, state_dict: dict, path, spec: CheckpointSpec) -> None:
    """``load_state_dict(strict=True)`` with a message that names the file and the mismatch."""
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        expected = set(module.state_dict())
        given = set(state_dict)
        missing = sorted(expected - given)[:5]
        unexpected = sorted(given - expected)[:5]
        raise CheckpointError(
            f"{path} does not match the {spec.name} network: missing keys {missing}, unexpected keys "
            f"{unexpected} (first five of each). Is it the right file and variant? ({error.__class__.__name__})"
        ) from error
