"""``smplify3d bench``: accuracy and speed over simulated scenes, ablations, LiDAR density/noise sweeps.

Parts (all on the same simulated scenes, deterministic for a seed except wall times):

1. accuracy and speed of the full method: mean PVE / MPJPE / PA-MPJPE (mm; PVE and MPJPE after
   aligning the pelvises, PA-MPJPE after Procrustes alignment) of the image-only initial
   estimate and of the fit, the ratio PVE_fit / PVE_init, per-stage mean times, frames/s and
   persons/s;
2. ablations: the full method; no visibility filter; no ICP; no 3D term (plain image SMPLify);
3. sweeps of the LiDAR's effect: density (each person's points randomly subsampled to a fraction)
   and range noise (extra Gaussian noise along the LiDAR ray, or isotropic). The sweeps perturb the
   person points of the already simulated scenes (faster than simulating again); the per-keypoint
   LiDAR visibility flags are recomputed from the perturbed points, as the simulator computes them;
4. speed: one frame of ``--speed-persons`` persons timed after a warm-up run, with the per-stage split.

Results are printed as tables; ``--json`` writes everything, ``--plot`` the sweep figure.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List

QUICK_DENSITY_FRACTIONS = (1.0, 0.25, 0.05)
QUICK_NOISE_SIGMAS_CM = (0.0, 5.0)
# HumanM3 scenes (basketball, plaza, intersection) are crowded: people occlude each other, which
# is what the visibility filter is for; 4 persons per frame rarely occlude.
DEFAULT_PERSONS = 8


def _float_list(text: str) -> List[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from smplify3d_core.bench.report import print_report, write_json_report, write_plot
    from smplify3d_core.bench.runs import DENSITY_FRACTIONS, NOISE_SIGMAS_CM, run_benchmark
    from smplify3d_core.body.default_model import default_body_model_dir
    from smplify3d_core.body.model import SMPLBody
    from smplify3d_core.fit.config import load_fit_config
    from smplify3d_core.geometry.nearest import set_search_threads

    threads = getattr(args, "threads", None)
    if threads:  # smplify3d's main() sets it too; kept so that the command also works on its own
        torch.set_num_threads(max(1, int(threads)))
        set_search_threads(max(1, int(threads)))
    quick = bool(args.quick)
    if args.sequence or args.moving_robot:
        return _cmd_sequence_bench(args)
    if args.pipeline:
        from smplify3d_core.bench.pipeline import pipeline_bench_command

        return pipeline_bench_command(args)
    if args.perception:
        from smplify3d_core.bench.perception import perception_bench_command
        from smplify3d_core.models import resolve_device

        body = SMPLBody.from_path(args.smpl_model_path or default_body_model_dir(), gender=args.gender)
        return perception_bench_command(body, resolve_device(args.device), args.json, quick, args.seed)
    scenes = args.scenes if args.scenes is not None else (2 if quick else 10)
    persons = args.persons if args.persons is not None else (2 if quick else DEFAULT_PERSONS)
    density = args.density or (QUICK_DENSITY_FRACTIONS if quick else DENSITY_FRACTIONS)
    noise = args.noise_cm or (QUICK_NOISE_SIGMAS_CM if quick else NOISE_SIGMAS_CM)
    speed_persons = args.speed_persons if args.speed_persons is not None else (2 if quick else 8)
    speed_repeats = args.speed_repeats if args.speed_repeats is not None else (1 if quick else 3)

    config = load_fit_config(args.preset or args.sensor)
    body = SMPLBody.from_path(args.smpl_model_path or default_body_model_dir(), gender=args.gender)
    report = run_benchmark(
        body, config, preset=args.sensor, scenes=scenes, persons=persons, seed=args.seed, device=args.device,
        density=density, noise_cm=noise, noise_mode=args.noise_mode, speed_persons=speed_persons,
        speed_repeats=speed_repeats, progress=not args.no_progress,
    )
    report["settings"]["quick"] = quick
    report["settings"]["config_name"] = args.preset or args.sensor
    report["settings"]["arguments"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    print_report(report)

    plot = args.plot
    if plot is None:
        plot = Path(args.json).with_name(Path(args.json).stem + "_sweeps.png") if args.json else Path("bench_sweeps.png")
    report["plot"] = str(write_plot(report, plot))
    print(f"wrote {report['plot']}")
    if args.json:
        write_json_report(args.json, report)
    if args.strict:
        ok = report["targets"]["pve_ratio_met"] and report["targets"]["full_beats_all_ablations"]
        ok = ok and report["targets"].get("speed_met", True)
        return 0 if ok else 1
    return 0


def _cmd_sequence_bench(args: argparse.Namespace) -> int:
    from smplify3d_core.bench.report import write_json_report
    from smplify3d_core.bench.sequence import print_sequence_report, run_sequence_bench
    from smplify3d_core.body.default_model import default_body_model_dir
    from smplify3d_core.body.model import SMPLBody
    from smplify3d_core.fit.config import load_fit_config
    from smplify3d_core.models import resolve_device
    from smplify3d_core.sim.sequence import SequenceSettings

    settings = SequenceSettings(persons=args.persons if args.persons is not None else (3 if args.quick else 5),
                                frames=args.frames if args.frames is not None else (12 if args.quick else 60),
                                fps=args.fps, preset=args.sensor, seed=args.seed, moving_robot=bool(args.moving_robot))
    body = SMPLBody.from_path(args.smpl_model_path or default_body_model_dir(), gender=args.gender)
    report = run_sequence_bench(body, load_fit_config(args.preset or args.sensor), settings,
                                device=resolve_device(args.device), seed=args.seed, progress=not args.no_progress)
    report["settings"]["config_name"] = args.preset or args.sensor
    print_sequence_report(report)
    if args.json:
        write_json_report(args.json, {"sequence": report})
    if args.strict:
        targets = report["targets"]
        return 0 if all(targets[k] for k in ("speed_met", "pve_met", "accel_met", "id_switches_met")) else 1
    return 0


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``bench`` sub-command to the ``smplify3d`` parser."""
    p = subparsers.add_parser(
        "bench", help="accuracy and speed over simulated scenes, ablations, LiDAR density/noise sweeps",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scenes", type=int, default=None, help="number of simulated scenes (default 10; 2 with --quick)")
    p.add_argument("--persons", type=int, default=None,
                   help="persons per scene (default 8, a crowded HumanM3-like scene with occlusions; 2 with --quick)")
    p.add_argument("--sensor", default="humanm3", choices=("humanm3", "sloper4d"), help="simulated sensor preset")
    p.add_argument("--preset", default=None, help="fit preset or YAML (default: the fit preset named like --sensor)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--json", default=None, type=Path, help="write the full report as JSON here")
    p.add_argument("--plot", default=None, type=Path,
                   help="sweep figure PNG (default: <json stem>_sweeps.png next to --json, else bench_sweeps.png)")
    p.add_argument("--seed", type=int, default=0, help="seed; scene i uses simulator seed 1000*seed+i")
    p.add_argument("--quick", action="store_true", help="a small fast run (2 scenes, 2 persons, 3+2 sweep points)")
    p.add_argument("--perception", action="store_true",
                   help="time the learned front-ends instead (ViTPose-S/B/L, CLIFF-HR48/Res50, random weights, "
                        "per person, batch 1 and 8)")
    p.add_argument("--pipeline", action="store_true",
                   help="time whole frames through the node's frame path instead: proposals, ViTPose, CLIFF, tracked "
                        "fit, per ViTPose-S/B x CLIFF-Res50/HR48 (random weights); cold and tracked frames "
                        "(--persons default 5, --frames default 6, 3 with --quick; --quick: ViTPose-S + CLIFF-Res50)")
    p.add_argument("--flip-test", action="store_true", help="--pipeline: ViTPose with flip test (default off)")
    p.add_argument("--network-outputs", default="random", choices=("random", "simulated"),
                   help="--pipeline: fit the random networks' own outputs (no track ever starts warm), or the "
                        "simulator's keypoints and initial estimates in their place (the networks still run)")
    p.add_argument("--sequence", action="store_true",
                   help="fit one simulated sequence cold and tracked instead: speed, PVE/MPJPE/PA-MPJPE, acceleration "
                        "error, identity switches (default 5 persons, 60 frames at 10 Hz; --persons, --frames, --fps)")
    p.add_argument("--moving-robot", action="store_true",
                   help="with --sequence (implies it): the sensor rig drives at 0.5 m/s and turns; tracking in odom")
    p.add_argument("--frames", type=int, default=None, help="--sequence: frames (default 60; 12 with --quick)")
    p.add_argument("--fps", type=float, default=10.0, help="--sequence: frame rate, Hz (default 10)")
    p.add_argument("--density", type=_float_list, default=None,
                   help="comma-separated fractions of each person's points to keep (default 1,0.5,0.25,0.1,0.05)")
    p.add_argument("--noise-cm", type=_float_list, default=None,
                   help="comma-separated added noise sigmas, cm (default 0,1,2,5,10)")
    p.add_argument("--noise-mode", default="ray", choices=("ray", "iso"), help="noise along the LiDAR ray or isotropic")
    p.add_argument("--speed-persons", type=int, default=None,
                   help="persons in the timed speed frame (default 8; 2 with --quick; 0 skips the speed part)")
    p.add_argument("--speed-repeats", type=int, default=None, help="timed runs of the speed frame (default 3; 1 with --quick)")
    # the same dest as the top-level ``smplify3d --threads`` (SUPPRESS: do not overwrite its value)
    p.add_argument("--threads", type=int, default=argparse.SUPPRESS,
                   help="torch CPU threads (same as smplify3d --threads; default: $OMP_NUM_THREADS, else 1)")
    p.add_argument("--smpl-model-path", default="", help="SMPL model file or folder (default: the synthetic model)")
    p.add_argument("--gender", default="neutral", choices=("neutral", "male", "female"))
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--strict", action="store_true", help="exit 1 when an acceptance target is not met")
    p.set_defaults(func=_cmd_bench)
    return p
