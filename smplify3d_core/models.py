"""Loading what the frame path runs: the body model, the fitter and the learned front-ends.

Everything is built from a :class:`~smplify3d_core.pipeline_config.PipelineConfig` by
:func:`load_models`, so the node, ``smplify3d-bag process`` and the CLI load the same things
from the same settings. Missing files raise FileNotFoundError naming the setting to fix.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from smplify3d_core.body.default_model import default_body_model_dir, default_pose_prior_path
from smplify3d_core.body.model import SMPLBody
from smplify3d_core.body.priors import MaxMixturePosePrior
from smplify3d_core.fit.config import FitConfig, load_fit_config
from smplify3d_core.fit.optimizer import SMPLify3D
from smplify3d_core.pipeline_config import PipelineConfig


def resolve_device(device: Optional[str]) -> torch.device:
    """"auto"/None -> cuda when available else cpu; "cuda" without a GPU is a clear error."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but torch sees no CUDA device; use device cpu or auto")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device {device!r} is not a torch device (use auto, cpu, cuda or cuda:N)") from error


def load_pose_prior(config: FitConfig) -> MaxMixturePosePrior:
    """The GMM named by ``config.pose_prior_path``, or the project's own prior when it is null.

    The project's prior is a file written once (``smplify3d make-pose-prior``, run by the set-up);
    it is never fitted here.
    """
    path = Path(config.pose_prior_path) if config.pose_prior_path else default_pose_prior_path()
    if not path.is_file():
        if config.pose_prior_path:
            raise FileNotFoundError(f"pose_prior_path {path} does not exist (the fit preset names it; SMPLify's "
                                    "gmm_08.pkl or a file written by `smplify3d make-pose-prior --out FILE`)")
        raise FileNotFoundError(f"the default pose prior {path} has not been written yet: run `smplify3d "
                                "make-pose-prior` once (scripts/setup.sh does), or set pose_prior_path in the fit preset")
    return MaxMixturePosePrior.from_pickle(path)


def build_fitter(body: SMPLBody, config: FitConfig, device: Optional[str] = None, seed: int = 0) -> SMPLify3D:
    """An optimizer ready for frames: body on the device, pose prior loaded, tables computed."""
    return SMPLify3D(body, config, load_pose_prior(config), device=resolve_device(device), seed=seed)


def load_body(config: PipelineConfig) -> SMPLBody:
    """The SMPL body of ``smpl_model_path`` and ``gender`` (the synthetic model when the path is empty)."""
    return SMPLBody.from_path(config.smpl_model_path or default_body_model_dir(), gender=config.gender)


@dataclass
class FrontEnds:
    """The learned per-frame estimators; either may be None (then observations must supply it).

    keypoints: a :class:`~smplify3d_core.perception.pose2d.KeypointEstimator` (ViTPose), called as
        ``keypoints(image (H, W, 3) uint8 RGB, boxes (K, 4) px) -> (K, 17, 3)``.
    initial_smpl: a :class:`~smplify3d_core.perception.cliff.CliffEstimator` (CLIFF), called as
        ``initial_smpl(image, boxes, K (3, 3)) -> list of SMPLParams`` (camera frame).
    """

    keypoints: object = None
    initial_smpl: object = None

    def describe(self) -> str:
        """Which front-ends run, in words: e.g. ``"ViTPose-S (flip test off), CLIFF-Res50"``, or
        ``"keypoints from observations, initial estimates from observations"`` when neither is loaded."""
        keypoints = _front_end_label(self.keypoints, "keypoints", "variant", lambda estimator, variant: (
            f"ViTPose-{variant.upper()} (flip test {'on' if getattr(estimator, 'flip_test', False) else 'off'})"))
        initial_smpl = _front_end_label(self.initial_smpl, "initial estimates", "encoder_name",
                                        lambda _, encoder: f"CLIFF-{CLIFF_ENCODER_LABELS.get(encoder, encoder)}")
        return f"{keypoints}, {initial_smpl}"


#: How the CLIFF encoders are written in logs and reports.
CLIFF_ENCODER_LABELS = {"res50": "Res50", "hr48": "HR48"}


def _front_end_label(estimator, what: str, attribute: str, label) -> str:
    """``label(estimator, value)`` for an estimator whose network has ``attribute`` (the ViTPose variant, the
    CLIFF encoder); "<what> from observations" without an estimator; else "<what> from <its class>"."""
    if estimator is None:
        return f"{what} from observations"
    value = getattr(getattr(estimator, "model", None), attribute, None)
    return f"{what} from {type(estimator).__name__}" if value is None else label(estimator, value)


def load_front_ends(config: PipelineConfig) -> FrontEnds:
    """ViTPose and CLIFF from ``vitpose_checkpoint`` / ``cliff_checkpoint`` (an empty path: not loaded)."""
    device = resolve_device(config.device)
    keypoints = initial_smpl = None
    sources = {"vitpose_checkpoint": "ViTPose weights from the mmpose model zoo (1.x) or the official ViTPose release",
               "cliff_checkpoint": "CLIFF hr48/res50 weights from the CLIFF repository release"}
    for name, source in sources.items():
        path = getattr(config, name)
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"{name} {path} does not exist (expected: {source})")
    if config.vitpose_checkpoint:
        from smplify3d_core.perception.pose2d import KeypointEstimator
        from smplify3d_core.perception.vitpose import load_vitpose

        keypoints = KeypointEstimator(load_vitpose(config.vitpose_checkpoint, device=device), device=device,
                                      flip_test=config.flip_test)
    if config.cliff_checkpoint:
        from smplify3d_core.perception.cliff import CliffEstimator

        initial_smpl = CliffEstimator.from_checkpoint(config.cliff_checkpoint, device=device)
    return FrontEnds(keypoints, initial_smpl)


def load_models(config: PipelineConfig) -> tuple[SMPLify3D, FrontEnds]:
    """(fitter, front-ends) for ``config``: the body, the fit preset, the pose prior and the networks; the
    fitter's one-off warm-up runs here, at start-up, rather than in the first frame."""
    fitter = build_fitter(load_body(config), load_fit_config(config.preset), device=config.device, seed=config.seed)
    fitter.warm_up()
    return fitter, load_front_ends(config)
