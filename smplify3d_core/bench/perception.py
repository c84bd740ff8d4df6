"""``smplify3d bench --perception``: per-person latency of the learned front-ends.

Times ViTPose (S, B, L) and CLIFF (HRNet-W48, ResNet-50) end to end (crop, network, decode) on
a simulated frame, with random weights — the architectures, not the weights, set the speed.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from smplify3d_core.perception.cliff import CLIFF, CliffEstimator
from smplify3d_core.perception.pose2d import KeypointEstimator
from smplify3d_core.perception.vitpose import build_vitpose


def _time_call(function, repeats: int) -> float:
    """Median wall time of ``function()`` over ``repeats`` runs after one warm-up, seconds."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run_perception_bench(image: np.ndarray, boxes: np.ndarray, K: np.ndarray, device, batch_sizes=(1, 8),
                         repeats: int = 2, vitpose_variants=("b", "l"), cliff_encoders=("hr48", "res50")) -> list:
    """Rows {model, batch, flip, seconds_per_person, persons_per_second} for each model and batch size.

    image: (H, W, 3) uint8 RGB; boxes: (N, 4) person boxes (pixels, N >= max batch size is not
    required: boxes are repeated to fill a batch); K: (3, 3) intrinsics.
    """
    torch.manual_seed(0)
    rows = []
    for variant in vitpose_variants:
        model = build_vitpose(variant).eval()
        for flip in (False, True):
            estimator = KeypointEstimator(model, device=device, flip_test=flip, half=False)
            rows += _time_per_person(f"ViTPose-{variant.upper()}", flip, batch_sizes, repeats, boxes,
                                     lambda batch_boxes: estimator(image, batch_boxes))
        model = estimator = None  # free the network before building the next one
    for encoder in cliff_encoders:
        estimator = CliffEstimator(CLIFF(encoder).eval(), device=device)
        rows += _time_per_person(f"CLIFF-{encoder.upper()}", None, batch_sizes, repeats, boxes,
                                 lambda batch_boxes: estimator(image, batch_boxes, K))
        estimator = None
    return rows


def _time_per_person(model: str, flip, batch_sizes, repeats: int, boxes: np.ndarray, run) -> list:
    """Rows for one front-end: ``run(batch_boxes (batch, 4))`` timed per batch size, seconds per person."""
    rows = []
    for batch in batch_sizes:
        batch_boxes = np.resize(boxes, (batch, 4))
        seconds = _time_call(lambda: run(batch_boxes), repeats) / batch
        rows.append({"model": model, "batch": batch, "flip": flip,
                     "seconds_per_person": seconds, "persons_per_second": 1.0 / seconds})
    return rows


def print_perception_rows(rows: list, device) -> None:
    print(f"per-person latency of the front-ends (random weights), device {device}, torch threads {torch.get_num_threads()}")
    print(f"   {'model':<14} {'batch':>5} {'flip':>5} {'s/person':>9} {'persons/s':>10}")
    for row in rows:
        flip = "-" if row["flip"] is None else ("yes" if row["flip"] else "no")
        print(f"   {row['model']:<14} {row['batch']:>5d} {flip:>5} {row['seconds_per_person']:>9.3f} "
              f"{row['persons_per_second']:>10.2f}")


def perception_bench_command(body, device, json_path=None, quick: bool = False, seed: int = 0) -> int:
    """Simulate a frame and time the front-ends on its person boxes."""
    from smplify3d_core.sim.scene import simulate_scene

    scene = simulate_scene(body, persons=4, preset="humanm3", seed=seed)
    boxes = np.stack([p.bbox_xywh for p in scene.frame.persons])
    rows = run_perception_bench(
        scene.frame.image, boxes, scene.frame.camera.K, device,
        batch_sizes=(1, 2) if quick else (1, 8), repeats=1 if quick else 2,
        vitpose_variants=("b",) if quick else ("s", "b", "l"), cliff_encoders=("res50",) if quick else ("hr48", "res50"),
    )
    print_perception_rows(rows, device)
    if json_path:
        from smplify3d_core.bench.report import write_json_report

        write_json_report(json_path, {"device": str(device), "torch_threads": torch.get_num_threads(), "rows": rows})
    return 0
