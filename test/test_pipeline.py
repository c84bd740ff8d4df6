"""The frame pipeline: proposals -> crops -> keypoints -> initial SMPL -> fit, and its bad inputs."""
import dataclasses

import numpy as np
import pytest
import torch

from smplify3d_core.fit.config import FitConfig
from smplify3d_core.outputs import frame_metrics
from smplify3d_core.perception.cliff import CLIFF, CliffEstimator
from smplify3d_core.perception.pose2d import KeypointEstimator
from smplify3d_core.perception.vitpose import build_vitpose
from smplify3d_core.pipeline import FrontEnds, build_fitter, observe_frame, process_frame
from smplify3d_core.sim.scene import simulate_scene


def _iou(a, b):
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    w = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    h = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    return w * h / (aw * ah + bw * bh - w * h)


class SimulatedFrontEnd:
    """Stands in for ViTPose and CLIFF with the simulator's keypoints and initial estimates.

    A box gets the observation of the simulated person whose true box overlaps it most (a
    detector would see that person there); unmatched boxes get zero-confidence keypoints.
    """

    def __init__(self, scene):
        self.persons = scene.frame.persons

    def _match(self, box):
        overlaps = [_iou(box, p.bbox_xywh) for p in self.persons]
        best = int(np.argmax(overlaps))
        return self.persons[best] if overlaps[best] > 0.3 else None

    def keypoints(self, image, boxes):
        out = np.zeros((len(boxes), 17, 3))
        for i, box in enumerate(boxes):
            person = self._match(box)
            if person is not None:
                out[i] = person.keypoints
        return out

    def initial_smpl(self, image, boxes, K):
        return [self._match(box).init for box in boxes]


@pytest.fixture(scope="module")
def scene(smpl_body):
    return simulate_scene(smpl_body, persons=3, preset="humanm3", seed=21)


@pytest.fixture(scope="module")
def quick_fitter(smpl_body):
    config = FitConfig.preset("humanm3")
    config = dataclasses.replace(config, stage1=dataclasses.replace(config.stage1, iterations=5),
                                 stage2=dataclasses.replace(config.stage2, iterations=15),
                                 stage3=dataclasses.replace(config.stage3, iterations=5))
    return build_fitter(smpl_body, config, device="cpu")


def test_pipeline_with_simulated_front_ends_is_accurate(scene, smpl_body):
    """Accuracy level: LiDAR proposals and crops, simulator keypoints/initial estimates, full fit."""
    fake = SimulatedFrontEnd(scene)
    front_ends = FrontEnds(keypoints=fake.keypoints, initial_smpl=fake.initial_smpl)
    fitter = build_fitter(smpl_body, FitConfig.preset("humanm3"), device="cpu")
    frame = scene.frame
    fit, observed = process_frame(frame.image, frame.cloud_lidar, frame.camera, frame.T_cam_lidar, front_ends, fitter)
    well_seen = [p for p in frame.persons if len(p.points) >= 100]
    assert fit is not None and len(observed.frame.persons) >= len(well_seen)
    for name in ("proposals", "crops", "keypoints", "initial_smpl", "stage2"):
        assert name in observed.stage_seconds
    # ground truth follows the matched simulated person
    observed.frame.truth = {}
    for person in observed.frame.persons:
        match = fake._match(person.bbox_xywh)
        observed.frame.truth[person.tracking_id] = dataclasses.replace(frame.truth[match.tracking_id],
                                                                       tracking_id=person.tracking_id)
    rows = frame_metrics(fit, fitter.body)["persons"]
    pve_init = np.mean([r["pve_init_mm"] for r in rows])
    pve_fit = np.mean([r["pve_fit_mm"] for r in rows])
    assert pve_fit < 0.7 * pve_init


def test_pipeline_with_random_weight_networks_runs_end_to_end(scene, quick_fitter):
    """Shape level: real ViTPose-B and CLIFF-Res50 architectures with random weights."""
    torch.manual_seed(0)
    front_ends = FrontEnds(
        keypoints=KeypointEstimator(build_vitpose("b").eval(), flip_test=False),
        initial_smpl=CliffEstimator(CLIFF("res50").eval()),
        min_keypoint_score=0.0,  # random heatmaps are flat: keep every proposal
    )
    frame = scene.frame
    fit, observed = process_frame(frame.image, frame.cloud_lidar, frame.camera, frame.T_cam_lidar, front_ends, quick_fitter)
    count = len(observed.frame.persons)
    assert count >= 1
    for person in observed.frame.persons:
        assert person.keypoints.shape == (17, 3) and np.isfinite(person.keypoints).all()
        assert person.init is not None and np.isfinite(person.init.transl).all()
    assert fit.result.vertices.shape == (count, 6890, 3)


def test_weak_keypoints_drop_a_proposal(scene):
    fake = SimulatedFrontEnd(scene)

    def weak_keypoints(image, boxes):
        out = fake.keypoints(image, boxes)
        out[0, :, 2] = 0.05
        return out

    frame = scene.frame
    strong = observe_frame(frame.image, frame.cloud_lidar, frame.camera, frame.T_cam_lidar,
                           FrontEnds(fake.keypoints, fake.initial_smpl))
    weak = observe_frame(frame.image, frame.cloud_lidar, frame.camera, frame.T_cam_lidar,
                         FrontEnds(weak_keypoints, fake.initial_smpl))
    assert len(weak.frame.persons) == len(strong.frame.persons) - 1
    assert any("weak keypoints" in reason for _, reason in weak.dropped)


def test_caller_boxes_outside_or_empty_are_dropped_with_a_reason(scene, quick_fitter):
    fake = SimulatedFrontEnd(scene)
    frame = scene.frame
    boxes = np.array([frame.persons[0].bbox_xywh, [5000.0, 100.0, 50.0, 80.0], [100.0, 100.0, 0.0, 50.0]])
    fit, observed = process_frame(frame.image, frame.cloud_lidar, frame.camera, frame.T_cam_lidar,
                                  FrontEnds(fake.keypoints, fake.initial_smpl), quick_fitter, boxes_xywh=boxes)
    assert len(observed.frame.persons) == 1 and fit is not None
    assert sorted(name for name, _ in observed.dropped) == ["box 1", "box 2"]


@pytest.mark.parametrize("bad", ["grayscale", "uint16", "wrong_size"])
def test_bad_images_are_clear_errors(scene, bad):
    fake = SimulatedFrontEnd(scene)
    frame = scene.frame
    image = {"grayscale": frame.image[..., 0], "uint16": frame.image.astype(np.uint16) * 256,
             "wrong_size": frame.image[:100]}[bad]
    with pytest.raises(ValueError, match="grayscale|16-bit|camera is"):
        observe_frame(image, frame.cloud_lidar, frame.camera, frame.T_cam_lidar, FrontEnds(fake.keypoints, fake.initial_smpl))


@pytest.mark.parametrize("cloud", ["empty", "all_nan"])
def test_an_empty_cloud_gives_no_persons_not_an_exception(scene, quick_fitter, cloud):
    fake = SimulatedFrontEnd(scene)
    frame = scene.frame
    points = np.zeros((0, 3)) if cloud == "empty" else np.full((500, 3), np.nan)
    fit, observed = process_frame(frame.image, points, frame.camera, frame.T_cam_lidar,
                                  FrontEnds(fake.keypoints, fake.initial_smpl), quick_fitter)
    assert fit is None and observed.frame.persons == []


def test_fit_command_computes_missing_keypoints_and_inits_with_checkpoints(tmp_path, scene):
    """`smplify3d fit --vitpose --cliff` on a folder without keypoints/initial estimates."""
    from smplify3d_core.cli import main
    from smplify3d_core.eval.scene_folder import write_scene_folder

    torch.manual_seed(1)
    vitpose_file, cliff_file = tmp_path / "vitpose_s.pth", tmp_path / "cliff_res50.pt"
    torch.save({"meta": {"epoch": np.int64(210)}, "state_dict": build_vitpose("s").state_dict()}, vitpose_file)
    torch.save({"model": {f"module.{k}": v for k, v in CLIFF("res50").state_dict().items()}}, cliff_file)
    folder = write_scene_folder(scene.frame, tmp_path / "scene")
    (folder / "2d_keypoints.json").unlink()
    (folder / "init_smpl.json").unlink()
    assert main(["fit", "--data", str(folder), "--out", str(tmp_path / "out")]) == 2  # nothing to start from
    quick = tmp_path / "quick.yaml"
    quick.write_text("stage1: {iterations: 3}\nstage2: {iterations: 5}\nstage3: {iterations: 3}\n")
    assert main(["fit", "--data", str(folder), "--out", str(tmp_path / "out"), "--config", str(quick),
                 "--vitpose", str(vitpose_file), "--cliff", str(cliff_file)]) == 0
    assert len(list((tmp_path / "out").glob("*.ply"))) == len(scene.frame.persons)
    assert main(["fit", "--data", str(folder), "--vitpose", str(tmp_path / "missing.pth"),
                 "--cliff", str(cliff_file)]) == 2
