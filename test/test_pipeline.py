"""The frame path: proposals or boxes or observations -> crops -> keypoints -> initial SMPL -> fit -> tracks."""
import copy
import dataclasses

import numpy as np
import pytest
import torch

from smplify3d_core.fit.config import FitConfig
from smplify3d_core.models import FrontEnds, build_fitter
from smplify3d_core.observe import SensorFrame, observe_frame
from smplify3d_core.outputs import frame_metrics
from smplify3d_core.perception import scene_segmentation
from smplify3d_core.perception.cliff import CLIFF, CliffEstimator
from smplify3d_core.perception.pose2d import KeypointEstimator
from smplify3d_core.perception.vitpose import build_vitpose
from smplify3d_core.pipeline import FrameProcessor, FrameStatus
from smplify3d_core.pipeline_config import PipelineConfig
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


def _sensor_frame(scene, **kwargs):
    f = scene.frame
    return SensorFrame(f.image, f.cloud_lidar, f.camera, f.T_cam_lidar, **kwargs)


def _observations_without_points(scene):
    given = []
    for person in scene.frame.persons:
        person = copy.copy(person)
        person.points = np.zeros((0, 3))
        given.append(person)
    return given


def test_pipeline_with_simulated_front_ends_is_accurate(scene, smpl_body):
    """Accuracy level: LiDAR proposals and their own crops, simulator keypoints/initial estimates, full fit."""
    fake = SimulatedFrontEnd(scene)
    fitter = build_fitter(smpl_body, FitConfig.preset("humanm3"), device="cpu")
    processor = FrameProcessor(PipelineConfig(), fitter, FrontEnds(fake.keypoints, fake.initial_smpl))
    outcome = processor.process(_sensor_frame(scene))
    well_seen = [p for p in scene.frame.persons if len(p.points) >= 100]
    assert outcome.status is FrameStatus.FITTED
    fit = outcome.fit
    assert len(fit.frame.persons) >= len(well_seen)
    assert sorted(outcome.track_ids) == list(range(len(fit.frame.persons)))
    for name in ("proposals", "keypoints", "initial_smpl", "stage2", "total"):
        assert name in outcome.stage_seconds
    fit.frame.truth = {}
    for person in fit.frame.persons:
        match = fake._match(person.bbox_xywh)
        fit.frame.truth[person.tracking_id] = dataclasses.replace(scene.frame.truth[match.tracking_id],
                                                                  tracking_id=person.tracking_id)
    rows = frame_metrics(fit, fitter.body)["persons"]
    pve_init = np.mean([r["pve_init_mm"] for r in rows])
    pve_fit = np.mean([r["pve_fit_mm"] for r in rows])
    assert pve_fit < 0.7 * pve_init


@pytest.mark.parametrize("mode", ["proposals", "boxes", "observations"])
def test_the_ground_is_fitted_once_and_the_cloud_clustered_once_per_frame(scene, monkeypatch, mode):
    """Every mode segments the frame's cloud once; proposals reuse their own point sets as crops."""
    calls = {"ground": 0, "clusters": 0}
    fit_ground, clusters = scene_segmentation.fit_ground_plane, scene_segmentation.euclidean_clusters

    def counting_ground(*args, **kwargs):
        calls["ground"] += 1
        return fit_ground(*args, **kwargs)

    def counting_clusters(points, distance, *args, **kwargs):
        if distance == PipelineConfig().proposals.cluster_distance:  # the scene clustering (not feet linking)
            calls["clusters"] += 1
        return clusters(points, distance, *args, **kwargs)

    monkeypatch.setattr(scene_segmentation, "fit_ground_plane", counting_ground)
    monkeypatch.setattr(scene_segmentation, "euclidean_clusters", counting_clusters)
    fake = SimulatedFrontEnd(scene)
    extra = {"boxes": {"boxes_xywh": np.stack([p.bbox_xywh for p in scene.frame.persons])},
             "observations": {"observations": _observations_without_points(scene)}}.get(mode, {})
    observed = observe_frame(_sensor_frame(scene, **extra), PipelineConfig(), FrontEnds(fake.keypoints, fake.initial_smpl))
    assert len(observed.frame.persons) == len(scene.frame.persons)
    assert calls == {"ground": 1, "clusters": 1}
    for person in observed.frame.persons:
        assert len(person.points) > 0 and person.lidar_visibility.sum() > 0


def test_crops_agree_between_proposals_boxes_and_observations(scene):
    """The three modes see the same segmentation, so a person's crop is the same whatever found it."""
    fake = SimulatedFrontEnd(scene)
    config = PipelineConfig()
    front_ends = FrontEnds(fake.keypoints, fake.initial_smpl)
    proposed = observe_frame(_sensor_frame(scene), config, front_ends).frame.persons
    boxed = observe_frame(_sensor_frame(scene, boxes_xywh=np.stack([p.bbox_xywh for p in proposed])), config,
                          front_ends).frame.persons
    for a, b in zip(proposed, boxed):
        shared = {tuple(p) for p in np.round(a.points, 6)} & {tuple(p) for p in np.round(b.points, 6)}
        assert len(shared) >= 0.9 * len(a.points)


def test_max_persons_keeps_the_nearest_in_every_mode(scene):
    fake = SimulatedFrontEnd(scene)
    config = dataclasses.replace(PipelineConfig(), max_persons=1)
    depths = {p.tracking_id: float(np.median(p.points[:, 2])) for p in scene.frame.persons}
    nearest = min(depths, key=depths.get)
    for extra in ({}, {"boxes_xywh": np.stack([p.bbox_xywh for p in scene.frame.persons])},
                  {"observations": _observations_without_points(scene)}):
        observed = observe_frame(_sensor_frame(scene, **extra), config, FrontEnds(fake.keypoints, fake.initial_smpl))
        assert len(observed.frame.persons) == 1
        kept = observed.frame.persons[0]
        assert abs(float(np.median(kept.points[:, 2])) - depths[nearest]) < 0.3
        assert sum("max_persons" in why for _, why in observed.dropped) == len(scene.frame.persons) - 1


def test_big_clouds_are_thinned_on_the_array(scene):
    fake = SimulatedFrontEnd(scene)
    cloud = scene.frame.cloud_lidar
    config = dataclasses.replace(PipelineConfig(), max_cloud_points=max(1000, len(cloud) // 3))
    observed = observe_frame(_sensor_frame(scene), config, FrontEnds(fake.keypoints, fake.initial_smpl))
    valid, used = observed.cloud_points
    assert valid == int(np.all(np.isfinite(cloud), axis=1).sum()) and used <= config.max_cloud_points
    assert len(observed.frame.cloud_lidar) == used


def test_pipeline_with_random_weight_networks_runs_end_to_end(scene, quick_fitter):
    """Shape level: real ViTPose-B and CLIFF-Res50 architectures with random weights."""
    torch.manual_seed(0)
    front_ends = FrontEnds(keypoints=KeypointEstimator(build_vitpose("b").eval(), flip_test=False),
                           initial_smpl=CliffEstimator(CLIFF("res50").eval()))
    config = dataclasses.replace(PipelineConfig(), min_keypoint_score=0.0)  # random heatmaps are flat: keep all
    outcome = FrameProcessor(config, quick_fitter, front_ends).process(_sensor_frame(scene))
    assert outcome.status is FrameStatus.FITTED
    count = len(outcome.fit.frame.persons)
    assert count >= 1
    for person in outcome.fit.frame.persons:
        assert person.keypoints.shape == (17, 3) and np.isfinite(person.keypoints).all()
        assert person.init is not None and np.isfinite(person.init.transl).all()
    assert outcome.fit.result.vertices.shape == (count, 6890, 3)


def test_weak_keypoints_drop_a_proposal(scene):
    fake = SimulatedFrontEnd(scene)

    def weak_keypoints(image, boxes):
        out = fake.keypoints(image, boxes)
        out[0, :, 2] = 0.05
        return out

    strong = observe_frame(_sensor_frame(scene), PipelineConfig(), FrontEnds(fake.keypoints, fake.initial_smpl))
    weak = observe_frame(_sensor_frame(scene), PipelineConfig(), FrontEnds(weak_keypoints, fake.initial_smpl))
    assert len(weak.frame.persons) == len(strong.frame.persons) - 1
    assert any("weak keypoints" in reason for _, reason in weak.dropped)


def test_caller_boxes_outside_or_empty_are_dropped_with_a_reason(scene, quick_fitter):
    fake = SimulatedFrontEnd(scene)
    boxes = np.array([scene.frame.persons[0].bbox_xywh, [5000.0, 100.0, 50.0, 80.0], [100.0, 100.0, 0.0, 50.0]])
    processor = FrameProcessor(PipelineConfig(), quick_fitter, FrontEnds(fake.keypoints, fake.initial_smpl))
    outcome = processor.process(_sensor_frame(scene, boxes_xywh=boxes))
    assert outcome.status is FrameStatus.FITTED and len(outcome.fit.frame.persons) == 1
    assert sorted(name for name, _ in outcome.dropped) == ["box 1", "box 2"]


@pytest.mark.parametrize("bad", ["grayscale", "uint16", "wrong_size"])
def test_bad_images_are_clear_errors(scene, bad):
    fake = SimulatedFrontEnd(scene)
    frame = scene.frame
    image = {"grayscale": frame.image[..., 0], "uint16": frame.image.astype(np.uint16) * 256,
             "wrong_size": frame.image[:100]}[bad]
    with pytest.raises(ValueError, match="grayscale|16-bit|camera is"):
        observe_frame(SensorFrame(image, frame.cloud_lidar, frame.camera, frame.T_cam_lidar), PipelineConfig(),
                      FrontEnds(fake.keypoints, fake.initial_smpl))


@pytest.mark.parametrize("cloud", ["empty", "all_nan"])
def test_an_empty_cloud_is_a_skipped_frame_not_an_exception(scene, quick_fitter, cloud):
    fake = SimulatedFrontEnd(scene)
    frame = scene.frame
    points = np.zeros((0, 3)) if cloud == "empty" else np.full((500, 3), np.nan)
    processor = FrameProcessor(PipelineConfig(), quick_fitter, FrontEnds(fake.keypoints, fake.initial_smpl))
    outcome = processor.process(SensorFrame(frame.image, points, frame.camera, frame.T_cam_lidar))
    assert outcome.status is FrameStatus.SKIPPED and "no valid points" in outcome.reason


def test_a_frame_with_nobody_is_empty_and_tracks_carry_over(scene, quick_fitter):
    fake = SimulatedFrontEnd(scene)
    processor = FrameProcessor(PipelineConfig(), quick_fitter, FrontEnds(fake.keypoints, fake.initial_smpl))
    first = processor.process(_sensor_frame(scene))
    far_away = scene.frame.cloud_lidar + np.array([0.0, 0.0, 50.0])  # everything above the sensor: nobody
    empty = processor.process(SensorFrame(scene.frame.image, far_away, scene.frame.camera, scene.frame.T_cam_lidar))
    again = processor.process(_sensor_frame(scene))
    assert first.status is FrameStatus.FITTED and empty.status is FrameStatus.EMPTY
    assert sorted(again.track_ids) == sorted(first.track_ids)  # one missed frame keeps the ids


def test_fit_command_computes_missing_keypoints_and_inits_with_checkpoints(tmp_path, scene):
    """`smplify3d fit --vitpose-checkpoint --cliff-checkpoint` on a folder without keypoints/initial estimates."""
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
    assert main(["fit", "--data", str(folder), "--out", str(tmp_path / "out"), "--preset", str(quick),
                 "--vitpose-checkpoint", str(vitpose_file), "--cliff-checkpoint", str(cliff_file),
                 "--min-keypoint-score", "0"]) == 0  # random weights: flat heatmaps
    assert len(list((tmp_path / "out").glob("*.ply"))) == len(scene.frame.persons)
    assert main(["fit", "--data", str(folder), "--vitpose-checkpoint", str(tmp_path / "missing.pth"),
                 "--cliff-checkpoint", str(cliff_file)]) == 2


def test_an_observed_person_without_lidar_points_is_fitted_and_flagged(scene, quick_fitter):
    """Observations mode: a box with no LiDAR point behind it still gives a body, flagged no_lidar_points."""
    given = _observations_without_points(scene)
    given[0].bbox_xywh = np.array([0.0, 0.0, 40.0, 30.0])  # the top-left corner of the image: sky, no points
    outcome = FrameProcessor(PipelineConfig(), quick_fitter).process(_sensor_frame(scene, observations=given))
    assert outcome.status is FrameStatus.FITTED
    persons = outcome.fit.frame.persons
    assert [p.tracking_id for p in persons] == [p.tracking_id for p in given]
    empty = [b for b, p in enumerate(persons) if len(p.points) == 0]
    assert empty == [0] and "no_lidar_points" in outcome.fit.result.flags[0]
    assert all(len(p.points) > 0 for p in persons[1:])
