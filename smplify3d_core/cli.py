"""The ``smplify3d`` command.

Sub-commands:
  make-body-model   write the synthetic SMPL-format body model (SMPL_{NEUTRAL,MALE,FEMALE}.pkl)
  make-pose-prior   fit the project's GMM pose prior to simulator poses (gmm_08.pkl layout)
  simulate          write a synthetic camera + LiDAR scene folder (research demo format + extras),
                    or with --frames N a sequence folder (moving people, stable ids, odom poses)
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

from smplify3d_core.pipeline_config import PipelineConfig, add_pipeline_arguments, pipeline_config_from_args


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

    from smplify3d_core.body.default_model import default_pose_prior_path

    path = args.out or default_pose_prior_path()
    if args.out is None and path.is_file() and not args.force:
        print(f"{path} exists (use --force to write it again)")
        return 0
    staging = path.with_name(path.name + ".tmp")
    write_simulator_pose_prior(staging, samples=args.samples, seed=args.seed)
    staging.replace(path)
    print(f"wrote {path}")
    return 0


def _load_body(smpl: str | None, gender: str):
    from smplify3d_core.body.default_model import default_body_model_dir
    from smplify3d_core.body.model import SMPLBody

    return SMPLBody.from_path(smpl if smpl else default_body_model_dir(), gender=gender)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from smplify3d_core.eval.scene_folder import write_scene_folder
    from smplify3d_core.sim.scene import simulate_scene

    body = _load_body(args.smpl_model_path or None, args.gender)
    if args.frames is not None:
        return _simulate_sequence(args, body)
    start = time.perf_counter()
    scene = simulate_scene(body, persons=args.persons, preset=args.sensor, seed=args.seed)
    elapsed = time.perf_counter() - start
    out = write_scene_folder(scene.frame, args.out, camera_name=f"sim_{args.sensor}", cloud_labels=scene.cloud_labels)
    print(f"simulated {len(scene.frame.persons)} persons ({args.sensor} sensor preset, seed {args.seed}) in {elapsed:.2f} s")
    for person in scene.frame.persons:
        depth = scene.frame.truth[person.tracking_id].joints[0, 2]
        visible = int((person.keypoints[:, 2] >= 0.5).sum())
        print(f"  person {person.tracking_id}: depth {depth:5.2f} m, {len(person.points):5d} LiDAR points, "
              f"{visible:2d}/17 confident keypoints")
    print(f"wrote {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


def _simulate_sequence(args: argparse.Namespace, body) -> int:
    """``simulate --frames N``: a sequence folder (frames/<index>/ scene folders + sequence.json)."""
    from tqdm import tqdm

    from smplify3d_core.eval.sequence_folder import write_sequence_folder
    from smplify3d_core.sim.sequence import SequencePlan, SequenceSettings, hidden_persons

    if args.frames < 1 or not args.fps > 0:
        raise ValueError("--frames must be >= 1 and --fps > 0")
    settings = SequenceSettings(persons=args.persons, frames=args.frames, fps=args.fps, preset=args.sensor,
                                seed=args.seed, moving_robot=args.moving_robot)
    start = time.perf_counter()
    plan = SequencePlan(settings, body)
    frames, counts, hidden = [], [], {}

    def simulated():
        for index in tqdm(range(args.frames), desc="simulating", unit="frame", file=sys.stderr,
                          disable=args.no_progress):
            item = plan.simulate_frame(index)
            counts.append(len(item.scene.frame.persons))
            who = hidden_persons(item.scene)
            if who:
                hidden[index] = who
            frames.append(index)
            yield item

    out = write_sequence_folder(simulated(), args.out, {**settings.to_dict(), "preset": plan.preset.name}, plan.betas,
                                camera_name=f"sim_{args.sensor}")
    elapsed = time.perf_counter() - start
    print(f"simulated {len(frames)} frames at {args.fps:g} Hz of {args.persons} persons ({args.sensor} sensor preset, seed "
          f"{args.seed}{', moving robot' if args.moving_robot else ''}) in {elapsed:.1f} s "
          f"({elapsed / max(len(frames), 1):.2f} s/frame)")
    print(f"  persons per frame: min {min(counts)}, mean {sum(counts) / len(counts):.1f}, max {max(counts)}")
    events = plan.events
    if "crossing" in events:
        crossing = events["crossing"]
        print(f"  crossing: {crossing['near']} passes in front of {crossing['far']} at t = {crossing['time']:.2f} s")
    for key in ("enters", "leaves", "waves", "crouches"):
        if events.get(key):
            print(f"  {key}: {', '.join(events[key])}")
    print("  frames with a person hidden by another (<= 3 confident keypoints, <= 20 LiDAR points): "
          + (", ".join(f"{i} ({'/'.join(who)})" for i, who in sorted(hidden.items())) or "none"))
    print(f"wrote {out}: sequence.json, frames/000000 .. frames/{frames[-1]:06d}")
    return 0


def _print_fit_table(metrics: dict, result) -> None:
    rows = metrics.get("persons", [])
    if not rows:
        return
    print(f"{'person':>6} {'points':>6} {'depth':>6} | {'PVE init':>9} {'PVE fit':>8} | "
          f"{'MPJPE init':>10} {'MPJPE fit':>9} | {'PA-MPJPE fit':>12}")
    for row in rows:
        print(f"{row['tracking_id']:>6} {row['lidar_points']:>6d} {row['depth_m']:>5.1f}m | "
              f"{row['pve_init_mm']:>8.1f} {row['pve_fit_mm']:>8.1f} | "
              f"{row['mpjpe_init_mm']:>10.1f} {row['mpjpe_fit_mm']:>9.1f} | {row['pa_mpjpe_fit_mm']:>12.1f}")


def _summarize_frame_metrics(metrics: dict, fit_seconds: float, persons: int) -> dict:
    import numpy as np

    rows = metrics.get("persons", [])
    summary = {"persons": persons, "fit_seconds": fit_seconds}
    for key in ("pve_init_mm", "pve_fit_mm", "mpjpe_init_mm", "mpjpe_fit_mm", "pa_mpjpe_init_mm", "pa_mpjpe_fit_mm"):
        if rows:
            summary[key] = float(np.mean([row[key] for row in rows]))
    return summary


def _fit_scene_folder(data, out, config, camera=None) -> dict:
    """Fit a scene folder with the frame path's settings ``config`` (a PipelineConfig); write the outputs.

    camera: the camera options of :func:`_camera_options` (for folders without camera.json)."""
    import json

    from smplify3d_core.eval.scene_folder import read_scene_folder
    from smplify3d_core.models import load_models
    from smplify3d_core.observe import complete_persons
    from smplify3d_core.outputs import write_fit_outputs
    from smplify3d_core.pipeline import fit_frame

    frame = read_scene_folder(data, require_keypoints=not config.vitpose_checkpoint, camera=camera)
    fitter, front_ends = load_models(config)
    persons, dropped = complete_persons(frame.persons, frame.image, frame.camera, config, front_ends)
    if dropped:
        raise ValueError(f"{data}: " + "; ".join(f"person {who}: {why}" for who, why in dropped))
    frame.persons = persons
    start = time.perf_counter()
    fit = fit_frame(frame, fitter, config.verdict)
    fit_seconds = time.perf_counter() - start
    metrics = write_fit_outputs(fit, fitter.body, out)
    result = fit.result
    print(f"fitted {len(frame.persons)} persons of frame {frame.frame_id} on {fitter.device} in {fit_seconds:.2f} s "
          f"(" + ", ".join(f"{k} {v:.2f}s" for k, v in result.stage_seconds.items()) + ")")
    for b, person in enumerate(frame.persons):
        status = "ok" if bool(result.valid[b]) else "not valid" if bool(result.fitted[b]) else "NOT FITTED"
        flags = f" flags: {', '.join(result.flags[b])}" if result.flags[b] else ""
        verdict = result.verdict
        checks = (f", point residual {float(verdict.point_residual_m[b]) * 100:.1f} cm, height "
                  f"{float(verdict.height_m[b]):.2f} m, range {float(verdict.range_m[b]):.1f} m") if verdict else ""
        print(f"  person {person.tracking_id}: {status}, reprojection {float(result.reprojection_error_px[b]):.1f} px, "
              f"chamfer {float(result.chamfer_m2[b]) * 1e4:.1f} cm²{checks}, {int(result.lidar_point_count[b])} "
              f"points{flags}")
    _print_fit_table(metrics, result)
    summary = _summarize_frame_metrics(metrics, fit_seconds, len(frame.persons))
    summary["stage_seconds"] = result.stage_seconds
    summary["persons_valid"] = int(result.valid.sum())
    if metrics:
        metrics.update(summary)
        (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return summary


def _cmd_fit(args: argparse.Namespace) -> int:
    out = args.out or Path(args.data) / "fit"
    _fit_scene_folder(args.data, out, pipeline_config_from_args(args, defaults={"preset": "demo"}),
                      camera=_camera_options(args))
    print(f"wrote {out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from smplify3d_core.eval.scene_folder import write_scene_folder
    from smplify3d_core.sim.scene import simulate_scene

    out = Path(args.out)
    body = _load_body(None, "neutral")
    scene = simulate_scene(body, persons=args.persons, preset=args.sensor, seed=args.seed)
    scene_dir = write_scene_folder(scene.frame, out / "scene", camera_name=f"sim_{args.sensor}", cloud_labels=scene.cloud_labels)
    print(f"simulated {args.persons} persons ({args.sensor} sensor preset, seed {args.seed}) -> {scene_dir}")
    config = PipelineConfig.from_dict({"preset": args.preset or args.sensor, "device": args.device, "seed": args.seed})
    summary = _fit_scene_folder(scene_dir, out, config)
    if "pve_fit_mm" in summary:
        print(f"mean PVE {summary['pve_init_mm']:.1f} -> {summary['pve_fit_mm']:.1f} mm, "
              f"MPJPE {summary['mpjpe_init_mm']:.1f} -> {summary['mpjpe_fit_mm']:.1f} mm, "
              f"PA-MPJPE {summary['pa_mpjpe_fit_mm']:.1f} mm, fit {summary['fit_seconds']:.2f} s")
    print(f"wrote {out}")
    return 0


def _dataset_body_loader(smpl_model_path: str):
    """gender -> SMPLBody from ``smpl_model_path`` (default: the synthetic model, which has all genders)."""
    cache = {}

    def load(gender: str):
        if gender not in cache:
            cache[gender] = _load_body(smpl_model_path or None, gender)
        return cache[gender]

    return load


def _cmd_keypoints(args: argparse.Namespace) -> int:
    from smplify3d_core.eval.registry import open_dataset
    from smplify3d_core.eval.keypoint_prepass import run_keypoint_prepass
    from smplify3d_core.models import load_front_ends

    config = pipeline_config_from_args(args)
    if not config.vitpose_checkpoint:
        raise ValueError("the keypoint pre-pass needs --vitpose-checkpoint FILE (ViTPose weights)")
    reader = open_dataset(args.dataset, args.data, body_loader=_dataset_body_loader(config.smpl_model_path),
                          sequences=args.sequences)
    estimator = load_front_ends(config).keypoints
    report = run_keypoint_prepass(reader, estimator, lidar_kernel_px=config.lidar_kernel_px, progress=not args.no_progress,
                                  log=lambda message: print(message, file=sys.stderr))
    print(f"keypoints: {report.written} frames written, {report.skipped} already done, {len(report.issues)} issues")
    return 0


def _eval_sequence_folder(args: argparse.Namespace) -> int:
    """``smplify3d eval --dataset sequence``: a sequence folder through the tracked frame path, in order."""
    import json

    from smplify3d_core.bench.report import clean_json
    from smplify3d_core.eval.sequence_folder import read_sequence_folder
    from smplify3d_core.eval.stream import StreamFrame, evaluate_stream
    from smplify3d_core.pipeline import FrameProcessor

    config = pipeline_config_from_args(args, defaults={"preset": "humanm3"})
    processor = FrameProcessor.from_config(config)
    frames = read_sequence_folder(args.data, load_image=not processor.needs_observations)
    if args.max_frames is not None:
        frames = frames[: args.max_frames]
    stream = (StreamFrame(f.index, f.stamp, f.T_odom_cam, f.frame) for f in frames)
    report = evaluate_stream(processor, stream, processor.fitter.body, progress=not args.no_progress,
                             desc="warm-started" if config.tracker.warm_start else "cold", total=len(frames))
    print(f"{len(frames)} frames, {report['persons']} persons ({report['person_frames']} fitted bodies, "
          f"{report['warm_started_fraction']:.0%} warm-started): PVE {report['pve_mm']:.1f} mm, MPJPE "
          f"{report['mpjpe_mm']:.1f} mm, PA-MPJPE {report['pa_mpjpe_mm']:.1f} mm, root error "
          f"{report['root_error_mm']:.1f} mm, acceleration error "
          f"{report['accel_error_mm']:.1f} mm/frame^2, {report['id_switches']} identity switches, "
          f"{report['seconds_per_frame']:.2f} s/frame")
    out = Path(args.out or Path(args.data) / "eval_sequence")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(clean_json(report), indent=1, allow_nan=False))
    print(f"wrote {out / 'metrics.json'}")
    return 0 if report["person_frames"] else 1


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.dataset == "sequence":
        return _eval_sequence_folder(args)
    from smplify3d_core.eval.registry import open_dataset
    from smplify3d_core.eval.evaluate import evaluate_dataset, format_summary
    from smplify3d_core.fit.config import load_fit_config
    from smplify3d_core.models import build_fitter, load_front_ends

    config = pipeline_config_from_args(
        args, defaults={"preset": {"humanm3": "humanm3", "sloper4d": "sloper4d"}.get(args.dataset, "demo")})
    body_loader = _dataset_body_loader(config.smpl_model_path)
    reader = open_dataset(args.dataset, args.data, body_loader=body_loader, sequences=args.sequences,
                          camera=_camera_options(args))
    fitter = build_fitter(body_loader(config.gender), load_fit_config(config.preset), device=config.device,
                          seed=config.seed)
    front_ends = load_front_ends(config)
    out = args.out or Path(args.data) / f"eval_{args.dataset}{'_tracked' if args.tracked else ''}"
    evaluate = evaluate_dataset
    if args.tracked:
        from smplify3d_core.eval.tracked_dataset import evaluate_dataset_tracked as evaluate
    report = evaluate(reader, fitter, out, with_pck=args.pck, front_ends=front_ends, config=config,
                      progress=not args.no_progress,
                      log=lambda message: print(message, file=sys.stderr), max_frames=args.max_frames)
    summary = report.summary
    print(f"evaluated {summary['frames_evaluated']}/{summary['frames_listed']} frames "
          f"({report.fitted_frames} fitted now, {report.cached_frames} from the cache), {len(report.issues)} issues")
    if summary["combined"]["persons"]:
        print(format_summary(summary))
    for sequence, motion in summary.get("motion", {}).items():
        print(f"{sequence}: root error {motion['root_error_mm']:.1f} mm, acceleration error {motion['accel_error_mm']:.1f} "
              f"mm/frame², {motion['id_switches']} identity "
              f"switches, {motion['seconds_per_frame']:.2f} s/frame, {motion['warm_started_fraction']:.0%} of "
              f"{motion['fits']} fits warm-started")
    print(f"wrote {Path(out) / 'metrics.json'}")
    return 0 if summary["combined"]["persons"] else 1


def _add_camera_flags(p: argparse.ArgumentParser) -> None:
    """--camera / --intrinsics / --extrinsic: the camera of research demo folders without camera.json."""
    p.add_argument("--camera", default=None, type=Path,
                   help="JSON with the intrinsics for folders without camera.json: \"camera_intrinsics\": "
                        "[[fx,0,cx],[0,fy,cy],[0,0,1]] (research format; a research smpl_<frame>.json works too) or "
                        "fx, fy, cx, cy (pixels), optionally width, height (default: read from the image)")
    p.add_argument("--intrinsics", nargs=4, type=float, default=None, metavar=("FX", "FY", "CX", "CY"),
                   help="camera intrinsics in pixels (instead of --camera); the image size is read from the image")
    p.add_argument("--extrinsic", default=None, type=Path,
                   help="4x4 LiDAR -> camera transform (JSON, .npy or .txt) when data.pkl's points and joints are "
                        "in the LiDAR frame (default: they are in the camera frame)")


def _camera_options(args: argparse.Namespace):
    from smplify3d_core.eval.scene_folder import camera_options

    return camera_options(args.camera, args.intrinsics, args.extrinsic)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smplify3d", description="SMPLify-3D: SMPL bodies from camera + LiDAR.")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and KD-tree search threads (default: $OMP_NUM_THREADS, else 1: the per-frame tensors are "
                             "small and extra threads mostly add contention)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-body-model", help="write the synthetic SMPL-format body model")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(func=_cmd_make_body_model)

    p = sub.add_parser("make-pose-prior", help="fit a GMM pose prior to simulator poses (gmm_08.pkl layout)")
    p.add_argument("--out", default=None, type=Path,
                   help="output .pkl file (default: the project's default prior in the cache folder, which the "
                        "node and the fit read; written only when missing unless --force)")
    p.add_argument("--force", action="store_true", help="write the default prior again even when it exists")
    p.add_argument("--samples", type=int, default=4000, help="number of simulator poses to fit")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_make_pose_prior)

    p = sub.add_parser("simulate", help="write a synthetic camera + LiDAR scene folder (or a sequence with --frames)",
                       description="Write one simulated frame as a scene folder, or with --frames N a sequence folder: "
                                   "OUT/frames/<index:06d>/ scene folders (the same people moving smoothly, stable "
                                   "tracking ids p0, p1, ...) and OUT/sequence.json (format smplify3d-sequence-1: fps, "
                                   "stamps, T_odom_cam per frame, true SMPL parameters per frame and person).")
    p.add_argument("--out", required=True, type=Path, help="output scene folder (sequence folder with --frames)")
    p.add_argument("--persons", type=int, default=4, help="number of people in the scene")
    p.add_argument("--sensor", default="humanm3", choices=("humanm3", "sloper4d"), help="simulated sensor preset")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same scene)")
    p.add_argument("--frames", type=int, default=None,
                   help="simulate a sequence of this many frames (default: one random frame)")
    p.add_argument("--fps", type=float, default=10.0, help="frames per second of a sequence (default 10)")
    p.add_argument("--moving-robot", action="store_true",
                   help="the sensor rig drives (0.5 m/s, back and forth along a gentle arc) during the sequence")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--smpl-model-path", default="", help="SMPL model file or folder (default: the synthetic model)")
    p.add_argument("--gender", default="neutral", choices=("neutral", "male", "female"))
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("fit", help="fit SMPL bodies to a scene folder")
    p.add_argument("--data", required=True, type=Path, help="scene folder (research demo format; camera from camera.json, "
                                                             "--camera/--intrinsics or smpl_<frame>.json)")
    p.add_argument("--out", default=None, type=Path, help="output folder (default: DATA/fit)")
    _add_camera_flags(p)
    add_pipeline_arguments(p, skip=("max_persons", "max_cloud_points"))
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("demo", help="simulate a scene, fit it, report accuracy before/after")
    p.add_argument("--out", default=Path("smplify3d_demo"), type=Path, help="output folder")
    p.add_argument("--persons", type=int, default=4)
    p.add_argument("--sensor", default="humanm3", choices=("humanm3", "sloper4d"), help="simulated sensor preset")
    p.add_argument("--preset", default=None, help="fit preset or YAML (default: the sensor's preset)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("keypoints", help="2D keypoint pre-pass (ViTPose) over a dataset, written in its layout")
    p.add_argument("--dataset", required=True, choices=("humanm3", "sloper4d", "demo"))
    p.add_argument("--data", required=True, type=Path, help="dataset root (HumanM3: the folder holding test/)")
    p.add_argument("--sequences", nargs="+", default=None, help="only these sequences")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_pipeline_arguments(p, skip=("preset", "cliff_checkpoint", "max_persons", "max_cloud_points",
                                    "min_keypoint_score", "seed", "gender"))
    p.set_defaults(func=_cmd_keypoints)

    p = sub.add_parser("eval", help="fit a dataset and report metrics (per sequence and combined)")
    p.add_argument("--dataset", required=True, choices=("humanm3", "sloper4d", "demo", "sequence"),
                   help="sequence: a folder of `smplify3d simulate --frames`, fitted in order through the tracked "
                        "frame path (tracking in its odom) with motion metrics")
    p.add_argument("--data", required=True, type=Path, help="dataset root (HumanM3: the folder holding test/)")
    p.add_argument("--out", default=None, type=Path, help="output folder (default: DATA/eval_<dataset>)")
    p.add_argument("--pck", action="store_true", help="also report PCK@50mm and AUC 0-200mm")
    p.add_argument("--sequences", nargs="+", default=None, help="only these sequences")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames (smoke runs)")
    p.add_argument("--tracked", action="store_true",
                   help="humanm3/sloper4d/demo: run each sequence in order through the tracked frame path, as the node "
                        "does (warm starts, track ids; not resumed from cached frames) and add acceleration error, "
                        "identity switches and s/frame per sequence; --dataset sequence is always tracked")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_camera_flags(p)
    add_pipeline_arguments(p, skip=("max_persons", "max_cloud_points"))
    p.set_defaults(func=_cmd_eval)

    from smplify3d_core.bench.command import add_bench_parser

    add_bench_parser(sub)
    return parser


def _set_threads(threads) -> None:
    import os

    import torch

    from smplify3d_core.geometry.nearest import set_search_threads

    if threads is None:
        threads = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    torch.set_num_threads(max(1, threads))
    set_search_threads(max(1, threads))  # the KD-tree searches run on their own OpenMP runtime


#: Commands that build a fitter: they write the project's default pose prior first when it is missing.
FITTING_COMMANDS = ("fit", "demo", "eval", "bench")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _set_threads(args.threads)
    try:
        if args.command in FITTING_COMMANDS:  # the project's pose prior is written once, on first use
            from smplify3d_core.sim.pose_prior import simulator_pose_prior_path

            simulator_pose_prior_path()
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:  # user errors: a message, not a traceback
        print(f"smplify3d {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
