"""The ``smplify3d`` command.

Sub-commands:
  make-body-model   write the synthetic SMPL-format body model (SMPL_{NEUTRAL,MALE,FEMALE}.pkl)
  make-pose-prior   fit the project's GMM pose prior to simulator poses (gmm_08.pkl layout)
  simulate          write a synthetic camera + LiDAR scene folder (research demo format + extras)
  fit               fit SMPL bodies to a scene folder (keypoints, initial estimates, LiDAR points)
  demo              simulate a scene, fit it and report accuracy before and after
  bench             accuracy and speed over many simulated scenes, ablations, density/noise sweeps
  keypoints         2D keypoint pre-pass (ViTPose + LiDAR visibility) over a dataset, resumable
  eval              fit a dataset (HumanM3, SLOPER4D, demo folders) and report metrics, resumable
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _cmd_make_body_model(args: argparse.Namespace) -> int:
    from smplify3d_core.body.loader import load_smpl_data
    from smplify3d_core.body.synthetic import write_synthetic_body_model

    out = write_synthetic_body_model(args.out)
    for gender in ("neutral", "male", "female"):
        data = load_smpl_data(out, gender)
        height = data.v_template[:, 1].max() - data.v_template[:, 1].min()
        print(f"{data.source}: {data.num_vertices} vertices, {len(data.faces)} faces, "
              f"{data.num_betas} shape directions, height {height:.3f} m")
    return 0


def _cmd_make_pose_prior(args: argparse.Namespace) -> int:
    from smplify3d_core.sim.pose_prior import write_simulator_pose_prior

    path = write_simulator_pose_prior(args.out, samples=args.samples, seed=args.seed)
    print(f"wrote {path}")
    return 0


def _load_body(smpl: str | None, gender: str):
    from smplify3d_core.body.default_model import default_body_model_dir
    from smplify3d_core.body.model import SMPLBody

    return SMPLBody.from_path(smpl if smpl else default_body_model_dir(), gender=gender)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from smplify3d_core.eval.scene_folder import write_scene_folder
    from smplify3d_core.sim.scene import simulate_scene

    body = _load_body(args.smpl, args.gender)
    start = time.perf_counter()
    scene = simulate_scene(body, persons=args.persons, preset=args.preset, seed=args.seed)
    elapsed = time.perf_counter() - start
    out = write_scene_folder(scene.frame, args.out, camera_name=f"sim_{args.preset}", cloud_labels=scene.cloud_labels)
    print(f"simulated {len(scene.frame.persons)} persons ({args.preset} preset, seed {args.seed}) in {elapsed:.2f} s")
    for person in scene.frame.persons:
        depth = scene.frame.truth[person.tracking_id].joints[0, 2]
        visible = int((person.keypoints[:, 2] >= 0.5).sum())
        print(f"  person {person.tracking_id}: depth {depth:5.2f} m, {len(person.points):5d} LiDAR points, "
              f"{visible:2d}/17 confident keypoints")
    print(f"wrote {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


def _print_fit_table(metrics: dict, result) -> None:
    rows = metrics.get("persons", [])
    if not rows:
        return
    print(f"{'person':>6} {'points':>6} {'depth':>6} | {'PVE init':>9} {'PVE fit':>8} | {'MPJPE init':>10} {'MPJPE fit':>9} | {'PA-MPJPE fit':>12}")
    for row in rows:
        print(f"{row['tracking_id']:>6} {row['lidar_points']:>6d} {row['depth_m']:>5.1f}m | {row['pve_init_mm']:>8.1f} {row['pve_fit_mm']:>8.1f} | "
              f"{row['mpjpe_init_mm']:>10.1f} {row['mpjpe_fit_mm']:>9.1f} | {row['pa_mpjpe_fit_mm']:>12.1f}")


def _summarize_frame_metrics(metrics: dict, fit_seconds: float, persons: int) -> dict:
    import numpy as np

    rows = metrics.get("persons", [])
    summary = {"persons": persons, "fit_seconds": fit_seconds}
    for key in ("pve_init_mm", "pve_fit_mm", "mpjpe_init_mm", "mpjpe_fit_mm", "pa_mpjpe_init_mm", "pa_mpjpe_fit_mm"):
        if rows:
            summary[key] = float(np.mean([row[key] for row in rows]))
    return summary


def _fit_scene_folder(data, out, config_name, smpl, gender, device, seed, vitpose=None, cliff=None) -> dict:
    import json

    from smplify3d_core.eval.scene_folder import read_scene_folder
    from smplify3d_core.fit.config import load_fit_config
    from smplify3d_core.outputs import write_fit_outputs
    from smplify3d_core.pipeline import build_fitter, fill_missing_observations, fit_frame, load_front_ends

    frame = read_scene_folder(data, require_keypoints=vitpose is None)
    if vitpose or cliff:
        keypoints, initial_smpl = load_front_ends(vitpose, cliff, device)
        completed = fill_missing_observations(frame, keypoints, initial_smpl)
        if completed:
            print(f"computed {'keypoints' if vitpose else ''}{' and ' if vitpose and cliff else ''}"
                  f"{'initial estimates' if cliff else ''} from the image for persons {completed}")
    missing = [p.tracking_id for p in frame.persons if p.init is None]
    if missing:
        raise ValueError(f"{data}: persons {missing} have no initial estimate (init_smpl.json); "
                         "pass --cliff CHECKPOINT to estimate them from the image")
    no_keypoints = [p.tracking_id for p in frame.persons if not (p.keypoints[:, 2] > 0).any()]
    if no_keypoints:
        raise ValueError(f"{data}: persons {no_keypoints} have no 2D keypoints (2d_keypoints.json); "
                         "pass --vitpose CHECKPOINT to detect them in the image")
    config = load_fit_config(config_name)
    body = _load_body(smpl, gender)
    fitter = build_fitter(body, config, device=device, seed=seed)
    start = time.perf_counter()
    fit = fit_frame(frame, fitter)
    fit_seconds = time.perf_counter() - start
    metrics = write_fit_outputs(fit, fitter.body, out)
    result = fit.result
    print(f"fitted {len(frame.persons)} persons of frame {frame.frame_id} on {fitter.device} in {fit_seconds:.2f} s "
          f"(" + ", ".join(f"{k} {v:.2f}s" for k, v in result.stage_seconds.items()) + ")")
    for b, person in enumerate(frame.persons):
        status = "ok" if bool(result.valid[b]) else "NOT FITTED"
        flags = f" flags: {', '.join(result.flags[b])}" if result.flags[b] else ""
        print(f"  person {person.tracking_id}: {status}, reprojection {float(result.reprojection_error_px[b]):.1f} px, "
              f"chamfer {float(result.chamfer_m2[b]) * 1e4:.1f} cm², {int(result.lidar_point_count[b])} points{flags}")
    _print_fit_table(metrics, result)
    summary = _summarize_frame_metrics(metrics, fit_seconds, len(frame.persons))
    summary["stage_seconds"] = result.stage_seconds
    if metrics:
        metrics.update(summary)
        (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return summary


def _cmd_fit(args: argparse.Namespace) -> int:
    out = args.out or Path(args.data) / "fit"
    _fit_scene_folder(args.data, out, args.config, args.smpl, args.gender, args.device, args.seed, args.vitpose, args.cliff)
    print(f"wrote {out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from smplify3d_core.eval.scene_folder import write_scene_folder
    from smplify3d_core.sim.scene import simulate_scene

    out = Path(args.out)
    body = _load_body(None, "neutral")
    scene = simulate_scene(body, persons=args.persons, preset=args.preset, seed=args.seed)
    scene_dir = write_scene_folder(scene.frame, out / "scene", camera_name=f"sim_{args.preset}", cloud_labels=scene.cloud_labels)
    print(f"simulated {args.persons} persons ({args.preset} preset, seed {args.seed}) -> {scene_dir}")
    summary = _fit_scene_folder(scene_dir, out, args.config or args.preset, None, "neutral", args.device, args.seed)
    if "pve_fit_mm" in summary:
        print(f"mean PVE {summary['pve_init_mm']:.1f} -> {summary['pve_fit_mm']:.1f} mm, "
              f"MPJPE {summary['mpjpe_init_mm']:.1f} -> {summary['mpjpe_fit_mm']:.1f} mm, "
              f"PA-MPJPE {summary['pa_mpjpe_fit_mm']:.1f} mm, fit {summary['fit_seconds']:.2f} s")
    print(f"wrote {out}")
    return 0


def _dataset_body_loader(smpl):
    """gender -> SMPLBody from --smpl (default: the synthetic model, which has all genders)."""
    cache = {}

    def load(gender: str):
        if gender not in cache:
            cache[gender] = _load_body(smpl, gender)
        return cache[gender]

    return load


def _cmd_keypoints(args: argparse.Namespace) -> int:
    from smplify3d_core.eval.registry import open_dataset
    from smplify3d_core.eval.keypoint_prepass import run_keypoint_prepass
    from smplify3d_core.pipeline import load_front_ends

    reader = open_dataset(args.dataset, args.data, body_loader=_dataset_body_loader(args.smpl), sequences=args.sequences)
    estimator, _ = load_front_ends(args.vitpose, None, args.device, flip_test=not args.no_flip)
    report = run_keypoint_prepass(reader, estimator, lidar_kernel_px=args.lidar_kernel_px, progress=not args.no_progress,
                                  log=lambda message: print(message, file=sys.stderr))
    print(f"keypoints: {report.written} frames written, {report.skipped} already done, {len(report.issues)} issues")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from smplify3d_core.eval.registry import open_dataset
    from smplify3d_core.eval.evaluate import evaluate_dataset, format_summary
    from smplify3d_core.fit.config import load_fit_config
    from smplify3d_core.pipeline import build_fitter, load_front_ends

    body_loader = _dataset_body_loader(args.smpl)
    reader = open_dataset(args.dataset, args.data, body_loader=body_loader, sequences=args.sequences)
    config = load_fit_config(args.config or {"humanm3": "humanm3", "sloper4d": "sloper4d"}.get(args.dataset, "demo"))
    fitter = build_fitter(body_loader(args.gender), config, device=args.device, seed=args.seed)
    keypoints = initial_smpl = None
    if args.vitpose or args.cliff:
        keypoints, initial_smpl = load_front_ends(args.vitpose, args.cliff, args.device)
    out = args.out or Path(args.data) / f"eval_{args.dataset}"
    report = evaluate_dataset(reader, fitter, out, with_pck=args.pck, keypoints=keypoints, initial_smpl=initial_smpl,
                              progress=not args.no_progress, log=lambda message: print(message, file=sys.stderr),
                              max_frames=args.max_frames)
    summary = report.summary
    print(f"evaluated {summary['frames_evaluated']}/{summary['frames_listed']} frames "
          f"({report.fitted_frames} fitted now, {report.cached_frames} from the cache), {len(report.issues)} issues")
    if summary["combined"]["persons"]:
        print(format_summary(summary))
    print(f"wrote {Path(out) / 'metrics.json'}")
    return 0 if summary["combined"]["persons"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smplify3d", description="SMPLify-3D: SMPL bodies from camera + LiDAR.")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: $OMP_NUM_THREADS, else 1: the per-frame tensors are "
                             "small and extra threads mostly add contention)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-body-model", help="write the synthetic SMPL-format body model")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(func=_cmd_make_body_model)

    p = sub.add_parser("make-pose-prior", help="fit a GMM pose prior to simulator poses (gmm_08.pkl layout)")
    p.add_argument("--out", required=True, type=Path, help="output .pkl file")
    p.add_argument("--samples", type=int, default=4000, help="number of simulator poses to fit")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_make_pose_prior)

    p = sub.add_parser("simulate", help="write a synthetic camera + LiDAR scene folder")
    p.add_argument("--out", required=True, type=Path, help="output scene folder")
    p.add_argument("--persons", type=int, default=4, help="number of people in the scene")
    p.add_argument("--preset", default="humanm3", choices=("humanm3", "sloper4d"), help="sensor preset")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same scene)")
    p.add_argument("--smpl", default=None, help="SMPL model file or folder (default: the synthetic model)")
    p.add_argument("--gender", default="neutral", choices=("neutral", "male", "female"))
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("fit", help="fit SMPL bodies to a scene folder")
    p.add_argument("--data", required=True, type=Path, help="scene folder (research demo format + camera.json + init_smpl.json)")
    p.add_argument("--config", default=None, help="preset name (demo, humanm3, sloper4d) or YAML file (default: demo)")
    p.add_argument("--smpl", default=None, help="SMPL model file or folder (default: the synthetic model)")
    p.add_argument("--gender", default="neutral", choices=("neutral", "male", "female"))
    p.add_argument("--out", default=None, type=Path, help="output folder (default: DATA/fit)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vitpose", default=None, help="ViTPose checkpoint (mmpose 1.x or official): detect 2D keypoints "
                                                    "of persons the folder has none for")
    p.add_argument("--cliff", default=None, help="CLIFF checkpoint (hr48 or res50): estimate the initial SMPL of "
                                                  "persons without init_smpl.json entries")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("demo", help="simulate a scene, fit it, report accuracy before/after")
    p.add_argument("--out", default=Path("smplify3d_demo"), type=Path, help="output folder")
    p.add_argument("--persons", type=int, default=4)
    p.add_argument("--preset", default="humanm3", choices=("humanm3", "sloper4d"))
    p.add_argument("--config", default=None, help="fit preset or YAML (default: matches --preset)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("keypoints", help="2D keypoint pre-pass (ViTPose) over a dataset, written in its layout")
    p.add_argument("--dataset", required=True, choices=("humanm3", "sloper4d", "demo"))
    p.add_argument("--data", required=True, type=Path, help="dataset root (HumanM3: the folder holding test/)")
    p.add_argument("--vitpose", required=True, help="ViTPose checkpoint (mmpose 1.x or official layout)")
    p.add_argument("--sequences", nargs="+", default=None, help="only these sequences")
    p.add_argument("--smpl", default=None, help="SMPL model folder (SLOPER4D ground truth; default: synthetic model)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--lidar-kernel-px", type=int, default=50, help="dilation of the LiDAR visibility mask, pixels")
    p.add_argument("--no-flip", action="store_true", help="skip ViTPose's flip test (2x faster)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_keypoints)

    p = sub.add_parser("eval", help="fit a dataset and report metrics (per sequence and combined)")
    p.add_argument("--dataset", required=True, choices=("humanm3", "sloper4d", "demo"))
    p.add_argument("--data", required=True, type=Path, help="dataset root (HumanM3: the folder holding test/)")
    p.add_argument("--config", default=None, help="fit preset or YAML (default: the dataset's preset)")
    p.add_argument("--smpl", default=None, help="SMPL model folder with SMPL_{NEUTRAL,MALE,FEMALE} (default: synthetic)")
    p.add_argument("--gender", default="neutral", choices=("neutral", "male", "female"), help="gender of the fitted body")
    p.add_argument("--cliff", default=None, help="CLIFF checkpoint: initial estimates for persons without an init file entry")
    p.add_argument("--vitpose", default=None, help="ViTPose checkpoint: keypoints for frames without a pre-pass file")
    p.add_argument("--out", default=None, type=Path, help="output folder (default: DATA/eval_<dataset>)")
    p.add_argument("--pck", action="store_true", help="also report PCK@50mm and AUC 0-200mm")
    p.add_argument("--sequences", nargs="+", default=None, help="only these sequences")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames (smoke runs)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)

    from smplify3d_core.bench.command import add_bench_parser

    add_bench_parser(sub)
    return parser


def _set_threads(threads) -> None:
    import os

    import torch

    if threads is None:
        threads = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    torch.set_num_threads(max(1, threads))


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _set_threads(args.threads)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:  # user errors: a message, not a traceback
        print(f"smplify3d {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
