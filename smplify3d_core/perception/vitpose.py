"""ViTPose (top-down 2D human keypoints, COCO-17) in plain PyTorch.

The module's parameter names equal those of the mmpose 1.x checkpoints
(``td-hm_ViTPose-{small,base,large,huge}_8xb64-210e_coco-256x192-*.pth``), so the published
files load with ``load_state_dict(strict=True)``; files from the official ViTPose repository
(mmpose 0.x naming) are renamed on loading (:func:`vitpose_state_dict_from_checkpoint`).

Network (input ``(B, 3, 256, 192)`` normalised RGB, output ``(B, 17, 64, 48)`` heatmaps):

* backbone: ``patch_embed.projection`` Conv2d(3, C, 16, stride 16, padding 2) -> 16x12 tokens,
  plus ``pos_embed`` (1, 192, C); ``layers.N`` pre-norm transformer blocks
  (``ln1``, ``attn.qkv``, ``attn.proj``, ``ln2``, ``ffn.layers.0.0``, exact GELU,
  ``ffn.layers.1``; LayerNorm eps 1e-6); final LayerNorm ``ln1`` -> feature map (B, C, 16, 12);
* head: ``deconv_layers`` (ConvTranspose2d(C, 256, 4, 2, 1, no bias), BN, ReLU, twice)
  -> (B, 256, 64, 48), ``final_layer`` 1x1 conv -> 17 heatmaps.

Pre- and post-processing (crop, flip test, DARK-UDP decode) live in :mod:`.pose2d`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import VITPOSE_SPEC, CheckpointError, load_state_dict_strict, read_checkpoint

#: Network input size (height, width) in pixels and heatmap size (height, width).
INPUT_HW = (256, 192)
HEATMAP_HW = (64, 48)
PATCH_SIZE = 16
PATCH_PADDING = 2
GRID_HW = (16, 12)  # token grid for a 256x192 input with patch 16 and padding 2
NUM_KEYPOINTS = 17


@dataclass(frozen=True)
class ViTPoseConfig:
    """Backbone size of one ViTPose variant."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: int = 4


#: The published ViTPose variants (mmpose / mmpretrain ``arch`` settings).
VITPOSE_VARIANTS = {
    "s": ViTPoseConfig(embed_dim=384, depth=12, num_heads=12),
    "b": ViTPoseConfig(embed_dim=768, depth=12, num_heads=12),
    "l": ViTPoseConfig(embed_dim=1024, depth=24, num_heads=16),
    "h": ViTPoseConfig(embed_dim=1280, depth=32, num_heads=16),
}


# --------------------------------------------------------------------------------------------
# network
# --------------------------------------------------------------------------------------------
class PatchEmbed(nn.Module):
    """``projection``: Conv2d(3, C, 16, stride 16, padding 2); (B, 3, 256, 192) -> (B, 192, C)."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(3, embed_dim, PATCH_SIZE, stride=PATCH_SIZE, padding=PATCH_PADDING)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projection(images).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (bias) and ``proj``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C)."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, T, C/heads)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class FFN(nn.Module):
    """``layers.0.0`` Linear(C, 4C) + exact GELU, ``layers.1`` Linear(4C, C) (mmcv FFN naming)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, hidden), nn.GELU()), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TransformerLayer(nn.Module):
    """Pre-norm block: x + attn(ln1(x)), then x + ffn(ln2(x))."""

    def __init__(self, dim: int, num_heads: int, hidden: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ln2 = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = FFN(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class ViTBackbone(nn.Module):
    """Plain ViT: (B, 3, 256, 192) -> feature map (B, C, 16, 12). Final norm is named ``ln1``."""

    def __init__(self, config: ViTPoseConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, GRID_HW[0] * GRID_HW[1], dim))
        self.layers = nn.ModuleList(
            TransformerLayer(dim, config.num_heads, config.mlp_ratio * dim) for _ in range(config.depth)
        )
        self.ln1 = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images) + self.pos_embed
        for layer in self.layers:
            x = layer(x)
        x = self.ln1(x)
        batch, _, dim = x.shape
        return x.transpose(1, 2).reshape(batch, dim, GRID_HW[0], GRID_HW[1])


class HeatmapHead(nn.Module):
    """Two stride-2 deconvolutions (256 channels, BN, ReLU) and a 1x1 conv: (B, C, 16, 12) -> (B, 17, 64, 48)."""

    def __init__(self, in_channels: int, num_keypoints: int = NUM_KEYPOINTS, channels: int = 256) -> None:
        super().__init__()
        self.deconv_layers = nn.Sequential(
            nn.ConvTranspose2d(in_channels, channels, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.final_layer = nn.Conv2d(channels, num_keypoints, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(features))


class ViTPose(nn.Module):
    """ViTPose top-down heatmap network (COCO-17 keypoints, 256x192 input).

    ``forward(images)``: images (B, 3, 256, 192) float, RGB normalised with the ImageNet mean
    [123.675, 116.28, 103.53] and std [58.395, 57.12, 57.375] (0..255 scale) -> heatmaps
    (B, 17, 64, 48). Heatmap pixel (i, j) corresponds to input pixel (191 j / 47, 255 i / 63) (UDP).
    """

    def __init__(self, variant: str = "b") -> None:
        super().__init__()
        if variant not in VITPOSE_VARIANTS:
            raise ValueError(f"unknown ViTPose variant {variant!r}; expected one of {sorted(VITPOSE_VARIANTS)}")
        self.variant = variant
        self.config = VITPOSE_VARIANTS[variant]
        self.backbone = ViTBackbone(self.config)
        self.head = HeatmapHead(self.config.embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or tuple(images.shape[1:]) != (3,) + INPUT_HW:
            raise ValueError(f"ViTPose expects images of shape (B, 3, {INPUT_HW[0]}, {INPUT_HW[1]}), "
                             f"got {tuple(images.shape)}")
        return self.head(self.backbone(images))


def build_vitpose(variant: str = "b") -> ViTPose:
    """A randomly initialised ViTPose of the given variant ("s", "b", "l" or "h")."""
    return ViTPose(variant)


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
_OFFICIAL_RENAMES = (
    # (old substring, new substring), applied in order to official-repo (mmpose 0.x) names
    ("backbone.patch_embed.proj.", "backbone.patch_embed.projection."),
    ("backbone.blocks.", "backbone.layers."),
    (".norm1.", ".ln1."),
    (".norm2.", ".ln2."),
    (".mlp.fc1.", ".ffn.layers.0.0."),
    (".mlp.fc2.", ".ffn.layers.1."),
    ("backbone.last_norm.", "backbone.ln1."),
    ("keypoint_head.", "head."),
)


def _extract_tensor_dict(payload: dict) -> dict:
    """The tensor mapping inside a checkpoint payload (``state_dict`` entry or a bare state dict)."""
    state = payload.get("state_dict", None) if isinstance(payload, dict) else None
    if state is None and isinstance(payload, dict) and payload and all(
            isinstance(v, torch.Tensor) for v in payload.values()):
        state = payload
    if not isinstance(state, dict) or not state:
        keys = sorted(map(str, payload))[:8] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"not a ViTPose checkpoint: expected a dict with 'state_dict' (mmpose 1.x: {{'meta', 'state_dict'}}; "
            f"official ViTPose repository: {{'state_dict'}}) holding 'backbone.*' and 'head.*' tensors; "
            f"found top-level keys {keys}"
        )
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def vitpose_state_dict_from_checkpoint(payload: dict) -> dict:
    """mmpose-1.x-named ViTPose tensors from a checkpoint payload.

    Accepts an mmpose 1.x file ``{'meta', 'state_dict'}`` (``backbone.layers.N...``, ``head...``)
    or an official ViTPose-repository file ``{'state_dict'}`` (``backbone.blocks.N.norm1``,
    ``mlp.fc1``, ``backbone.last_norm``, ``keypoint_head...``); a bare state dict works too.
    ``pos_embed`` of shape (1, 193, C) holds a leading cls-token slot: the official repository
    adds it to every patch (converted as ``pos[:, 1:] + pos[:, :1]``), mmpose/mmpretrain drops it
    (converted as ``pos[:, 1:]``). Training-only entries (``cls_token``,
    ``data_preprocessor.*``) are dropped. Returns a new dict of tensors (names as in
    :class:`ViTPose`); raises :class:`CheckpointError` when the payload is not a ViTPose file.
    """
    state = _extract_tensor_dict(payload)
    official = any(k.startswith(("backbone.blocks.", "keypoint_head.", "backbone.last_norm.")) for k in state)
    mmpose = any(k.startswith(("backbone.layers.", "head.")) for k in state)
    if not official and not mmpose:
        raise CheckpointError(
            "not a ViTPose checkpoint: no 'backbone.layers.*'/'head.*' (mmpose 1.x) or 'backbone.blocks.*'/"
            f"'keypoint_head.*' (official ViTPose) parameters; first keys {sorted(state)[:6]}"
        )
    out = {}
    for name, tensor in state.items():
        if name.startswith("data_preprocessor.") or name in ("backbone.cls_token", "cls_token"):
            continue
        if official:
            for old, new in _OFFICIAL_RENAMES:
                name = name.replace(old, new)
        out[name] = tensor
    pos = out.get("backbone.pos_embed")
    if pos is not None and pos.ndim == 3 and pos.shape[1] == GRID_HW[0] * GRID_HW[1] + 1:
        out["backbone.pos_embed"] = (pos[:, 1:] + pos[:, :1]) if official else pos[:, 1:]
    return {k: v.contiguous() for k, v in out.items()}


def infer_vitpose_variant(state_dict: dict) -> str:
    """The variant ("s", "b", "l", "h") of mmpose-named tensors, from the embedding width and depth."""
    weight = state_dict.get("backbone.patch_embed.projection.weight")
    if weight is None or weight.ndim != 4:
        raise CheckpointError("not a ViTPose state dict: 'backbone.patch_embed.projection.weight' is missing")
    width = int(weight.shape[0])
    depth = len({k.split(".")[2] for k in state_dict if k.startswith("backbone.layers.")})
    for variant, config in VITPOSE_VARIANTS.items():
        if config.embed_dim == width:
            if depth != config.depth:
                raise CheckpointError(f"ViTPose checkpoint with width {width} has {depth} transformer layers; "
                                      f"ViTPose-{variant.upper()} has {config.depth}")
            return variant
    raise CheckpointError(f"unsupported ViTPose embedding width {width}; known widths "
                          f"{ {v: c.embed_dim for v, c in VITPOSE_VARIANTS.items()} }")


def load_vitpose(path, device="cpu", variant: Optional[str] = None) -> ViTPose:
    """Load a ViTPose checkpoint (mmpose 1.x or official layout) strictly; returns the model in eval mode.

    ``variant`` ("s"/"b"/"l"/"h") is inferred from the file when None, and checked otherwise.
    Raises :class:`CheckpointError` (naming the file, where it is published and the config key)
    for a missing, unreadable or non-ViTPose file.
    """
    payload = read_checkpoint(path, VITPOSE_SPEC)
    try:
        state = vitpose_state_dict_from_checkpoint(payload)
        found = infer_vitpose_variant(state)
    except CheckpointError as error:
        raise CheckpointError(f"{Path(path)}: {error}. Expected a file like {VITPOSE_SPEC.example_file} from "
                              f"{VITPOSE_SPEC.published_at} ({VITPOSE_SPEC.config_key}).") from error
    if variant is not None and variant != found:
        raise CheckpointError(f"{Path(path)} holds ViTPose-{found.upper()} but variant {variant!r} was requested "
                              f"({VITPOSE_SPEC.config_key})")
    with torch.device("meta"):  # no time spent on random initialisation (ViTPose-H: 630 M parameters)
        model = build_vitpose(found)
    model = model.to_empty(device="cpu")
    load_state_dict_strict(model, state, path, VITPOSE_SPEC)
    return model.to(device).eval()
