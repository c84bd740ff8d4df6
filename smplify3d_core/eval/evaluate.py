"""Dataset evaluation: fit every frame of a dataset, compare with the ground truth, report.

Frames are fitted one after another, the persons of a frame in one batch. For each frame the
output folder gets ``<seq>/smpl_<frame>.json`` (the research result format) and
``<seq>/frame_<frame>.json`` (the cache: initial and fitted SMPL parameters and the per-person
metrics); a rerun skips frames whose cache file exists, so an interrupted run resumes. At the
end ``metrics.json`` (per sequence and combined, initial beside fitted) and
``per_frame_metrics.png`` are written.

Metrics (mm unless noted), per person, then averaged over persons:

* HumanM3-style truth (15 joints): the 15 joints are regressed from the fitted mesh with the
  humanm3 regressor; MPJPE (pelvis-aligned) and PA-MPJPE in mm;
* SMPL truth (SLOPER4D): PVE (6890 vertices, pelvis-aligned), MPERE, MPJPE and PA-MPJPE over the
  24 SMPL joints;
* with ``pck=True`` also PCK@50 mm and AUC over 0–200 mm of the same joints.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import torch

from smplify3d_core.body.tables import body_tables
from smplify3d_core.eval.datasets import DatasetReader, FrameRef
from smplify3d_core.eval.io import DatasetError, write_json_atomic
from smplify3d_core.eval.metrics import auc, mpjpe, pa_mpjpe, pck, score_against_truth
from smplify3d_core.outputs import smpl_result_json
from smplify3d_core.models import FrontEnds
from smplify3d_core.observe import complete_persons
from smplify3d_core.pipeline import fit_frame
from smplify3d_core.pipeline_config import PipelineConfig
from smplify3d_core.types import FrameObservation, SMPLParams

CACHE_VERSION = 2  # 2: records hold fitted (a body) beside valid (fitted and passed the verdict)


def person_metrics(vertices: np.ndarray, joints: np.ndarray, frame: FrameObservation, tracking_ids: List[str],
                   body) -> List[Optional[dict]]:
    """Per-person metrics of meshes against the frame's ground truth.

    vertices: (B, V, 3), joints: (B, 24, 3) metres, camera frame, in the order of ``tracking_ids``.
    Returns one dict per person ({"truth": "joints15"|"smpl", metric: value}, PCK@50 mm and AUC 0–200 mm
    included) or None without truth.
    """
    regressor = body_tables(body.data).humanm3_regressor
    out: List[Optional[dict]] = []
    persons = {p.tracking_id: p for p in frame.persons}
    for b, tid in enumerate(tracking_ids):
        truth = (frame.truth or {}).get(tid)
        person = persons.get(tid)
        v, j = vertices[b:b + 1].astype(np.float64), joints[b:b + 1].astype(np.float64)
        if truth is not None and truth.vertices.shape == v.shape[1:]:
            full = score_against_truth(v, j, truth.vertices[None], truth.joints[None], body.faces)
            row = {"truth": "smpl", **{k: float(full[k][0]) for k in ("pve_mm", "mpere", "mpjpe_mm", "pa_mpjpe_mm")}}
            row["pck50"], row["auc_0_200"] = float(full["pck50"][0]), float(full["auc_0_200"][0])
        elif person is not None and person.pose3d is not None:
            pred = np.einsum("jv,bvc->bjc", regressor, v)
            gt = person.pose3d[None]
            row = {"truth": "joints15", "mpjpe_mm": float(1000 * mpjpe(pred, gt, 0)[0]),
                   "pa_mpjpe_mm": float(1000 * pa_mpjpe(pred, gt)[0])}
            row["pck50"], row["auc_0_200"] = float(pck(pred, gt, 0.05, 0)[0]), float(auc(pred, gt, 0.2, 41, 0)[0])
        else:
            row = None
        out.append(row)
    return out


@torch.no_grad()
def smpl_meshes(body, params: List[SMPLParams]):
    """(vertices (B, V, 3), joints (B, 24, 3)) float64 numpy of SMPL parameter records."""
    dtype, device = body.v_template.dtype, body.v_template.device

    def stack(name: str) -> torch.Tensor:
        return torch.as_tensor(np.stack([getattr(p, name) for p in params]), dtype=dtype, device=device)

    out = body(stack("global_orient"), stack("body_pose"), stack("betas"), stack("transl"))
    return out.vertices.double().cpu().numpy(), out.joints.double().cpu().numpy()


@dataclass
class EvalReport:
    """What :func:`evaluate_dataset` did: the summary written to metrics.json, issues, frame counts."""

    summary: dict
    issues: List[str] = field(default_factory=list)
    fitted_frames: int = 0
    cached_frames: int = 0
    out_dir: Optional[Path] = None


def _mean_block(rows: List[dict], which: str) -> dict:
    keys = sorted({k for r in rows for k in r.get(which, {}) if k != "truth"})
    block = {}
    for key in keys:
        values = [r[which][key] for r in rows if key in r.get(which, {})]
        if values:
            block[key] = float(np.mean(values))
    return block


def summarize_rows(rows: List[dict]) -> dict:
    """Per-person rows -> {"persons", "frames", "init": {metric: mean}, "fit": {metric: mean}}."""
    return {"persons": len(rows), "persons_valid": sum(bool(r.get("valid", True)) for r in rows),
            "frames": len({(r["sequence"], r["frame"]) for r in rows}),
            "init": _mean_block(rows, "init"), "fit": _mean_block(rows, "fit")}


def _cache_path(out: Path, ref: FrameRef) -> Path:
    return out / ref.sequence / f"frame_{ref.frame_id}.json"


def evaluate_frame(reader: DatasetReader, ref: FrameRef, fitter, out: Path, front_ends: Optional[FrontEnds] = None,
                   config: Optional[PipelineConfig] = None) -> dict:
    """Fit one frame and write its result files; returns the cache record. Raises DatasetError.

    front_ends: ViTPose / CLIFF for the persons the dataset has no keypoints / initial estimate for
    (the frame path's completion step, with ``config``'s ``min_keypoint_score`` and ``lidar_kernel_px``).
    """
    front_ends = front_ends or FrontEnds()
    config = config or PipelineConfig()
    need_image = front_ends.keypoints is not None or front_ends.initial_smpl is not None
    frame, notes = reader.load_frame(ref, load_image=need_image, require_keypoints=front_ends.keypoints is None)
    kept, dropped = complete_persons(frame.persons, frame.image, frame.camera, config, front_ends)
    hints = {"keypoints": f" ({reader.keypoint_file(ref)}; run `smplify3d keypoints`)",
             "initial estimate": " (init_smpl file or --cliff-checkpoint FILE)"}
    for who, why in dropped:
        hint = next((text for key, text in hints.items() if key in why), "")
        notes.append(f"frame {ref.key}: person {who!r}: {why}{hint}; skipped")
    frame.persons = kept
    if not kept:
        raise DatasetError(f"frame {ref.key}: no person to fit" + (f" ({'; '.join(notes)})" if notes else ""))
    fit = fit_frame(frame, fitter, config.verdict)
    result = fit.result
    tids = [p.tracking_id for p in frame.persons]
    body = fitter.body
    init_params = [p.init for p in frame.persons]
    init_v, init_j = smpl_meshes(body, init_params)
    fit_v = result.vertices.double().cpu().numpy()
    fit_j = result.joints.double().cpu().numpy()
    fit_rows = person_metrics(fit_v, fit_j, frame, tids, body)
    init_rows = person_metrics(init_v, init_j, frame, tids, body)
    persons = []
    for b, person in enumerate(frame.persons):
        fitted = SMPLParams(result.global_orient[b].numpy(), result.body_pose[b].numpy(), result.betas[b].numpy(),
                            result.transl[b].numpy())
        persons.append({
            "tracking_id": person.tracking_id, "valid": bool(result.valid[b]), "fitted": bool(result.fitted[b]),
            "flags": list(result.flags[b]),
            "lidar_points": int(len(person.points)), "init_smpl": person.init.to_dict(), "fit_smpl": fitted.to_dict(),
            "metrics_init": init_rows[b], "metrics_fit": fit_rows[b],
        })
    folder = out / ref.sequence
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / f"smpl_{ref.frame_id}.json", smpl_result_json(fit))
    record = {"version": CACHE_VERSION, "setup": _setup_key(reader, fitter, config.verdict), "dataset": reader.name,
              "sequence": ref.sequence, "frame": ref.frame_id,
              "index": ref.index, "notes": notes, "fit_seconds": float(sum(result.stage_seconds.values())),
              "persons": persons}
    write_json_atomic(_cache_path(out, ref), record)  # written last: its presence marks the frame done
    return record


def _setup_key(reader: DatasetReader, fitter, verdict=None) -> str:
    """Identifies what a cached frame was computed with (dataset kind, fit configuration, model, the
    verdict's thresholds)."""
    import hashlib

    setup = (reader.name, fitter.config, fitter.body.data.source, fitter.seed, verdict or PipelineConfig().verdict)
    camera = getattr(reader, "camera", None)  # demo folders: --camera / --intrinsics / --extrinsic change the frames
    if camera is not None:
        setup += tuple(None if m is None else np.asarray(m).tolist() for m in (camera.K, camera.T_cam_points)) + (
            camera.width, camera.height)
    text = repr(setup)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _load_cache(path: Path, setup: str) -> Optional[dict]:
    """A cached frame record, or None when absent, unreadable or made with another setup."""
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.get("version") == CACHE_VERSION and record.get("setup") == setup else None


def reported_metrics(metrics: Optional[dict], with_pck: bool) -> dict:
    """A person's metrics as reported: PCK@50 mm and AUC only when asked for (None: none)."""
    return {k: v for k, v in (metrics or {}).items() if with_pck or k not in ("pck50", "auc_0_200")}


def start_evaluation(reader: DatasetReader, out_dir, max_frames: Optional[int], log: Callable[[str], None]):
    """The output folder (created), the frames to evaluate (the first ``max_frames``) and the issues the
    reader's scan met (each logged): (out Path, [FrameRef], [str])."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    refs = reader.frames()
    if max_frames is not None:
        refs = refs[:max_frames]
    for message in reader.issues:
        log(f"warning: {message}")
    return out, refs, list(reader.issues)


def evaluate_dataset(reader: DatasetReader, fitter, out_dir, with_pck: bool = False,
                     front_ends: Optional[FrontEnds] = None, config: Optional[PipelineConfig] = None,
                     progress: bool = True, log: Callable[[str], None] = print,
                     max_frames: Optional[int] = None) -> EvalReport:
    """Evaluate every frame of ``reader`` (resuming from cached frames) and write the summary files."""
    from tqdm import tqdm

    out, refs, issues = start_evaluation(reader, out_dir, max_frames, log)
    records = []
    fitted = cached = 0
    setup = _setup_key(reader, fitter, (config or PipelineConfig()).verdict)
    start = time.perf_counter()
    for ref in tqdm(refs, desc=f"eval {reader.name}", unit="frame", disable=not progress):
        cache = _cache_path(out, ref)
        record = _load_cache(cache, setup) if cache.is_file() else None
        if record is not None:
            cached += 1
        else:
            try:
                record = evaluate_frame(reader, ref, fitter, out, front_ends, config)
                fitted += 1
            except (DatasetError, ValueError, FileNotFoundError) as error:
                issues.append(str(error))
                log(f"warning: {error}")
                continue
        for note in record.get("notes", []):
            if note not in issues:
                issues.append(note)
                log(f"warning: {note}")
        records.append(record)
    rows = []
    for record in records:
        for person in record["persons"]:
            # every fitted body is scored, also those the verdict rejected: the errors measure the fit
            if person["metrics_fit"] is None or person["metrics_init"] is None or not person["fitted"]:
                continue
            rows.append({"sequence": record["sequence"], "frame": record["frame"], "index": record["index"],
                         "tracking_id": person["tracking_id"], "valid": person["valid"],
                         "init": reported_metrics(person["metrics_init"], with_pck),
                         "fit": reported_metrics(person["metrics_fit"], with_pck)})
    sequences = {}
    for seq in sorted({r["sequence"] for r in rows}):
        sequences[seq] = summarize_rows([r for r in rows if r["sequence"] == seq])
    summary = {
        "dataset": reader.name, "data": str(reader.root), "frames_listed": len(refs), "frames_evaluated": len(records),
        "frames_fitted_now": fitted, "frames_from_cache": cached,
        "truth": sorted({r["fit"].get("truth") for r in rows}),
        "sequences": sequences,
        "combined": summarize_rows(rows) if rows else {"persons": 0, "frames": 0, "init": {}, "fit": {}},
        "issues": issues, "seconds": time.perf_counter() - start,
    }
    write_json_atomic(out / "metrics.json", summary)
    if rows:
        plot_per_frame(rows, out / "per_frame_metrics.png")
    return EvalReport(summary, issues, fitted, cached, out)


def plot_per_frame(rows: List[dict], path: Path) -> Path:
    """Per-frame mean of the main metrics (initial dashed, fitted solid), one line per sequence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = {r["fit"].get("truth", "joints15") for r in rows}
    metrics = [m for m in ("pve_mm", "mpjpe_mm", "pa_mpjpe_mm") if any(m in r["fit"] for r in rows)]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(9, 2.6 * len(metrics)), squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics):
        for s, seq in enumerate(sorted({r["sequence"] for r in rows})):
            frames = sorted({(r["index"], r["frame"]) for r in rows if r["sequence"] == seq})
            x = [i for i, _ in frames]
            for which, style in (("init", "--"), ("fit", "-")):
                y = [np.mean([r[which][metric] for r in rows if r["sequence"] == seq and r["frame"] == f and metric in r[which]])
                     for _, f in frames]
                ax.plot(x, y, style, color=f"C{s}", marker=".", label=f"{seq} {which}")
        ax.set_ylabel(metric.replace("_mm", " (mm)"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("frame index in sequence")
    fig.suptitle(f"per-frame metrics ({', '.join(sorted(kinds))} ground truth): initial -- vs fitted —")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def format_summary(summary: dict) -> str:
    """A small text table: per sequence and combined, initial -> fitted."""
    lines = []
    blocks = list(summary["sequences"].items()) + [("combined", summary["combined"])]
    metrics = [m for m in ("pve_mm", "mpere", "mpjpe_mm", "pa_mpjpe_mm", "pck50", "auc_0_200")
               if any(m in b["fit"] for _, b in blocks)]
    header = f"{'sequence':<14} {'frames':>6} {'persons':>7} | " + " | ".join(f"{m:>20}" for m in metrics)
    lines.append(header)
    lines.append(f"{'':<14} {'':>6} {'':>7} | " + " | ".join(f"{'init -> fit':>20}" for _ in metrics))
    for name, block in blocks:
        cells = []
        for m in metrics:
            a, b = block["init"].get(m, math.nan), block["fit"].get(m, math.nan)
            cells.append(f"{a:>9.3f} -> {b:<7.3f}" if m in ("mpere", "pck50", "auc_0_200") else f"{a:>9.1f} -> {b:<7.1f}")
        lines.append(f"{name:<14} {block['frames']:>6} {block['persons']:>7} | " + " | ".join(f"{c:>20}" for c in cells))
    return "\n".join(lines)
