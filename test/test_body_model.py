"""The torch SMPL forward pass: agreement with smplx, batching, devices, rotations."""
import numpy as np
import pytest
import smplx
import torch

from smplify3d_core.body.model import SMPLBody, forward_kinematics, kinematic_levels
from smplify3d_core.body.tables import body_tables
from smplify3d_core.geometry.rotations import (
    axis_angle_to_matrix, axis_angle_to_quaternion, matrix_to_axis_angle, matrix_to_rot6d,
    quaternion_to_axis_angle, rot6d_to_matrix,
)


def test_forward_matches_smplx_on_random_poses(smpl_body, body_model_dir):
    generator = torch.Generator().manual_seed(0)
    batch = 3
    params = {
        "global_orient": torch.randn(batch, 3, generator=generator) * 0.5,
        "body_pose": torch.randn(batch, 69, generator=generator) * 0.3,
        "betas": torch.randn(batch, 10, generator=generator),
        "transl": torch.randn(batch, 3, generator=generator),
    }
    reference = smplx.SMPL(model_path=str(body_model_dir), gender="neutral", batch_size=batch)
    expected = reference(**params)
    ours = smpl_body(**params)
    assert ours.vertices.shape == (batch, 6890, 3) and ours.joints.shape == (batch, 24, 3)
    torch.testing.assert_close(ours.vertices, expected.vertices, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.joints, expected.joints[:, :24], atol=1e-5, rtol=1e-4)


def test_batch_members_are_independent(smpl_body):
    pose = torch.zeros(2, 69)
    pose[1, 17 * 3 + 2] = 1.0  # bend the left elbow of the second person only
    out = smpl_body(body_pose=pose)
    single = smpl_body(body_pose=pose[:1])
    torch.testing.assert_close(out.vertices[0], single.vertices[0])
    assert not torch.allclose(out.vertices[0], out.vertices[1], rtol=0, atol=1e-3)  # the forearm moves by cm


def test_rest_pose_joints_are_the_regressed_template_joints(smpl_body):
    out = smpl_body()
    expected = torch.as_tensor(smpl_body.data.J_regressor @ smpl_body.data.v_template, dtype=torch.float32)
    torch.testing.assert_close(out.joints[0], expected, atol=1e-5, rtol=0)


def test_gradients_flow_to_every_parameter(smpl_body):
    params = [torch.zeros(1, n, requires_grad=True) for n in (3, 69, 10, 3)]
    out = smpl_body(*params)
    (out.vertices[..., 2].sum() + out.joints.pow(2).sum() + out.vertices[:, :, 0].pow(2).sum()).backward()
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_equals_cpu(smpl_body):
    pose = torch.randn(2, 69) * 0.2
    cpu = smpl_body(body_pose=pose).vertices
    gpu = smpl_body.to("cuda")(body_pose=pose.cuda()).vertices.cpu()
    smpl_body.to("cpu")
    torch.testing.assert_close(cpu, gpu, atol=1e-5, rtol=1e-4)


def test_rotation_round_trips():
    generator = torch.Generator().manual_seed(1)
    axis_angle = torch.randn(100, 3, generator=generator, dtype=torch.float64)
    angle = torch.rand(100, 1, generator=generator, dtype=torch.float64) * 3.1
    axis_angle = axis_angle / axis_angle.norm(dim=-1, keepdim=True) * angle
    matrix = axis_angle_to_matrix(axis_angle)
    torch.testing.assert_close(matrix @ matrix.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(100, 3, 3))
    torch.testing.assert_close(matrix_to_axis_angle(matrix), axis_angle)
    torch.testing.assert_close(quaternion_to_axis_angle(axis_angle_to_quaternion(axis_angle)), axis_angle)
    torch.testing.assert_close(rot6d_to_matrix(matrix_to_rot6d(matrix)), matrix)
    # 90 degrees about z takes x to y
    quarter = axis_angle_to_matrix(torch.tensor([0.0, 0.0, np.pi / 2], dtype=torch.float64))
    torch.testing.assert_close(quarter @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
                               torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    assert torch.allclose(axis_angle_to_matrix(torch.zeros(3)), torch.eye(3), rtol=0, atol=1e-7)


def test_a_vertex_subset_is_posed_like_the_same_vertices_of_the_whole_mesh(smpl_body):
    generator = torch.Generator().manual_seed(3)
    params = dict(global_orient=0.5 * torch.randn(3, 3, generator=generator),
                  body_pose=0.3 * torch.randn(3, 69, generator=generator),
                  betas=torch.randn(3, 10, generator=generator), transl=torch.randn(3, 3, generator=generator))
    ids = np.array([0, 5, 411, 3000, 6889])
    whole = smpl_body(**params)
    subset = smpl_body(**params, vertices=smpl_body.vertex_subset(ids))
    torch.testing.assert_close(subset.vertices, whole.vertices[:, ids], rtol=0, atol=1e-5)
    torch.testing.assert_close(subset.joints, whole.joints, rtol=0, atol=0)
    torch.testing.assert_close(smpl_body.rest_joints(params["betas"]),
                               torch.einsum("jv,bvc->bjc", smpl_body.J_regressor,
                                            smpl_body(betas=params["betas"]).vertices), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="vertex ids"):
        smpl_body.vertex_subset(np.array([6890]))


def test_a_regressor_through_the_bones_gives_the_points_of_the_posed_mesh(body_model_dir):
    """The per-bone form of a vertex regressor (what the fit uses for the COCO joints) gives what the
    regressor gives on the whole posed mesh, whichever vertices are skinned alongside (float64)."""
    body = SMPLBody.from_path(body_model_dir, dtype=torch.float64)
    generator = torch.Generator().manual_seed(9)
    params = dict(global_orient=0.5 * torch.randn(4, 3, generator=generator, dtype=torch.float64),
                  body_pose=0.4 * torch.randn(4, 69, generator=generator, dtype=torch.float64),
                  betas=torch.randn(4, 10, generator=generator, dtype=torch.float64),
                  transl=torch.randn(4, 3, generator=generator, dtype=torch.float64))
    regressor = body_tables(body.data).coco17_regressor
    expected = torch.einsum("jv,bvc->bjc", torch.as_tensor(regressor, dtype=torch.float64), body(**params).vertices)
    skinned = body.skinned_regressor(regressor)
    assert len(skinned) == 17
    for vertices in (None, body.vertex_subset(np.array([], dtype=np.int64)), body.vertex_subset(np.array([7, 4000]))):
        out = body(**params, vertices=vertices, regressor=skinned)
        torch.testing.assert_close(out.regressed, expected, rtol=0, atol=1e-12)
    assert body(**params).regressed is None
    with pytest.raises(ValueError, match="vertex regressor"):
        body.skinned_regressor(np.ones((17, 100)))


def test_kinematic_levels_group_the_joints_by_depth_and_refuse_a_child_before_its_parent(smpl_body):
    levels = kinematic_levels(tuple(smpl_body.parents))
    assert sorted(j for joints, _ in levels for j in joints) == list(range(1, 24))
    order = [0]
    for joints, parent_slots in levels:  # each joint's parent was posed at an earlier level
        assert [order[slot] for slot in parent_slots] == [smpl_body.parents[j] for j in joints]
        order += joints
    assert len(levels) == 8  # the SMPL tree is 8 joints deep (pelvis to hand)
    with pytest.raises(ValueError, match="does not precede"):
        kinematic_levels((-1, 2, 0))


def test_forward_kinematics_composes_each_joint_with_its_parents(smpl_body):
    """Against the chain written out with 4x4 transforms, joint by joint."""
    generator = torch.Generator().manual_seed(3)
    rotations = axis_angle_to_matrix(0.5 * torch.randn(2, 24, 3, generator=generator, dtype=torch.float64))
    rest = torch.randn(2, 24, 3, generator=generator, dtype=torch.float64)
    world_rot, world_pos = forward_kinematics(rotations, rest, smpl_body.parents)
    for b in range(2):
        transforms = []
        for j in range(24):
            local = np.eye(4)
            local[:3, :3] = rotations[b, j].numpy()
            parent = smpl_body.parents[j] if j else None
            local[:3, 3] = rest[b, j].numpy() - (rest[b, parent].numpy() if j else 0.0)
            transforms.append(local if j == 0 else transforms[parent] @ local)
        np.testing.assert_allclose(world_rot[b].numpy(), np.stack([t[:3, :3] for t in transforms]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(world_pos[b].numpy(), np.stack([t[:3, 3] for t in transforms]), rtol=0, atol=1e-12)


class _HostDataRecorder(torch.overrides.TorchFunctionMode):
    """Records the torch calls that turn host data into tensors: indexing with a list or an array and
    tensors made from Python numbers. On a GPU each is a host-to-device copy that stalls the step."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ("__getitem__", "__setitem__"):
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            if any(isinstance(i, (list, np.ndarray)) for i in index):
                self.calls.append(f"{name} with {type(args[1]).__name__}")
        elif name in ("tensor", "as_tensor") and args and not isinstance(args[0], torch.Tensor):
            self.calls.append(f"torch.{name}")
        return func(*args, **(kwargs or {}))


def test_a_fit_steps_building_blocks_copy_nothing_from_the_host(smpl_body):
    """The body pass, the reprojection term and the priors run at every optimizer step: after their
    first call they index with tensors already on the device and make no tensors from host data."""
    from smplify3d_core.body.priors import angle_prior, shape_prior
    from smplify3d_core.fit.losses import reprojection_loss

    generator = torch.Generator().manual_seed(1)
    pose, betas = 0.2 * torch.randn(2, 69, generator=generator), torch.randn(2, 10, generator=generator)
    keypoints, K = 500 * torch.rand(2, 17, 2, generator=generator), torch.eye(3).repeat(2, 1, 1)

    def step():
        out = smpl_body(global_orient=torch.zeros(2, 3), body_pose=pose, betas=betas, transl=torch.tensor([[0.0, 0, 5]] * 2))
        loss = reprojection_loss(out.joints[:, :17], keypoints, torch.ones(2, 17), K, 100.0, True)
        return loss + angle_prior(pose) + shape_prior(betas)

    step()  # the first call may make its tables
    recorder = _HostDataRecorder()
    with recorder:
        out = smpl_body(global_orient=pose[:, :3], body_pose=pose, betas=betas, transl=pose[:, :3])
        loss = reprojection_loss(out.joints[:, :17], keypoints, torch.ones(2, 17), K, 100.0, True)
        loss = loss + angle_prior(pose) + shape_prior(betas)
    assert recorder.calls == []
    assert torch.isfinite(loss).all()
