"""Tests of the synthetic SMPL-format body model (smplify3d_core.body.synthetic)."""
import pickle

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.csgraph
import smplx
import torch

from smplify3d_core.body import synthetic as S

LEFT_ARM_JOINTS = (16, 18, 20, 22)


@pytest.fixture(scope="module")
def model():
    return S.build_synthetic_body("neutral")


@pytest.fixture(scope="module")
def labels():
    return S.vertex_part_labels()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return S.write_synthetic_body_model(tmp_path_factory.mktemp("synthetic_smpl"))


@pytest.fixture(scope="module")
def smpl(model_dir):
    return smplx.SMPL(model_path=str(model_dir), gender="neutral")


def _faces(model):
    return model["f"].astype(np.int64)


def _face_normals(v, f):
    return np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])


def _components(model):
    f = _faces(model)
    n = len(model["v_template"])
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    graph = scipy.sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    return scipy.sparse.csgraph.connected_components(graph, directed=False)


def _height(v):
    return v[:, 1].max() - v[:, 1].min()


def _part(labels, name):
    return labels == S.PART_NAMES.index(name)


def test_layout_matches_the_official_smpl_file(model):
    assert model["v_template"].shape == (6890, 3) and model["v_template"].dtype == np.float64
    assert model["shapedirs"].shape[:2] == (6890, 3) and model["shapedirs"].shape[2] >= 10
    assert model["posedirs"].shape == (6890, 3, 207)
    assert scipy.sparse.isspmatrix_csc(model["J_regressor"]) and model["J_regressor"].shape == (24, 6890)
    assert model["weights"].shape == (6890, 24)
    kintree = model["kintree_table"]
    assert kintree.shape == (2, 24) and kintree.dtype == np.int64
    assert kintree[0, 0] == 4294967295
    assert tuple(kintree[0, 1:]) == S.PARENTS[1:]
    assert S.PARENTS == (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
    np.testing.assert_array_equal(kintree[1], np.arange(24))
    f = model["f"]
    assert f.ndim == 2 and f.shape[1] == 3 and f.shape[0] <= 13776
    assert f.min() == 0 and f.max() == 6889
    assert model["bs_style"] == "lbs" and model["bs_type"] == "lrotmin"
    assert len(S.SHAPE_DIRECTION_MEANINGS) == model["shapedirs"].shape[2]
    assert len(set(S.SHAPE_DIRECTION_MEANINGS)) == len(S.SHAPE_DIRECTION_MEANINGS)


def test_surface_is_closed_consistently_oriented_and_not_degenerate(model):
    v, f = model["v_template"], _faces(model)
    undirected = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(undirected, axis=0, return_counts=True)
    assert np.all(counts == 2), "every edge must be shared by exactly two faces"
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed), "neighbouring faces must be oriented alike"
    assert len(np.unique(f)) == 6890, "every vertex belongs to a face"
    assert np.all((f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2]))
    areas = 0.5 * np.linalg.norm(_face_normals(v, f), axis=1)
    assert areas.min() > 1e-7
    count, comp = _components(model)
    assert 2 <= count <= 30
    for c in range(count):
        n_vertices = np.sum(comp == c)
        n_faces = np.sum(comp[f[:, 0]] == c)
        assert n_faces == 2 * n_vertices - 4, "each component is a closed genus-0 surface"


def test_normals_point_outward(model):
    v, f = model["v_template"], _faces(model)
    normals = _face_normals(v, f)
    count, comp = _components(model)
    for c in range(count):
        fc = f[comp[f[:, 0]] == c]
        nc = normals[comp[f[:, 0]] == c]
        volume = np.einsum("ij,ij->i", v[fc[:, 0]], np.cross(v[fc[:, 1]], v[fc[:, 2]])).sum() / 6.0
        assert volume > 0
        centroid = v[comp == c].mean(axis=0)
        away = np.einsum("ij,ij->i", v[fc].mean(axis=1) - centroid, nc) > 0
        assert away.mean() > 0.95


def test_human_proportions_and_smpl_axes(model, labels):
    v = model["v_template"]
    assert 1.65 < _height(v) < 1.75
    assert -1.23 < v[:, 1].min() < -1.15 and 0.45 < v[:, 1].max() < 0.55
    feet = _part(labels, "left_foot") | _part(labels, "right_foot")
    head = _part(labels, "head")
    assert v[feet, 1].max() < -1.0 and v[head, 1].min() > 0.2
    assert v[_part(labels, "left_hand"), 0].min() > 0.6  # the person's left is +x
    assert v[_part(labels, "right_hand"), 0].max() < -0.6
    torso = v[_part(labels, "torso")]
    # T-pose: the arms span well beyond 1.5 m at shoulder height.
    assert v[:, 0].max() - v[:, 0].min() > 1.5
    hips = torso[np.abs(torso[:, 1] + 0.33) < 0.02]
    assert 0.28 < hips[:, 0].max() - hips[:, 0].min() < 0.38
    chest = torso[np.abs(torso[:, 1] - 0.11) < 0.02]
    assert 0.18 < chest[:, 2].max() - chest[:, 2].min() < 0.26
    shoulders = v[np.abs(v[:, 1] - 0.22) < 0.02]
    shoulders = shoulders[np.abs(shoulders[:, 0]) < 0.25]
    assert 0.36 < shoulders[:, 0].max() - shoulders[:, 0].min() < 0.5
    thigh = v[_part(labels, "left_thigh")]
    ring = thigh[np.abs(thigh[:, 1] + 0.45) < 0.025]
    half_width, half_depth = (ring[:, [0, 2]].max(axis=0) - ring[:, [0, 2]].min(axis=0)) / 2
    assert 0.06 < half_width < 0.1 and 0.06 < half_depth < 0.1
    # The body faces +z: the nose is in front of the back of the head.
    nose = v[S.LANDMARK_VERTEX_IDS["nose"]]
    assert nose[2] > v[head, 2].mean() + 0.08


def test_genders_differ_by_template(labels):
    heights = {g: _height(S.build_synthetic_body(g)["v_template"]) for g in ("neutral", "male", "female")}
    assert heights["male"] == pytest.approx(1.76, abs=0.03)
    assert heights["female"] == pytest.approx(1.64, abs=0.03)
    assert heights["female"] < heights["neutral"] < heights["male"]
    male, female = S.build_synthetic_body("male"), S.build_synthetic_body("female")
    np.testing.assert_array_equal(male["f"], female["f"])
    for m in (male, female):
        np.testing.assert_allclose(m["J_regressor"] @ m["v_template"], m["J"], atol=1e-3)


def test_joint_regressor_hits_the_designed_joints_from_nearby_vertices(model):
    R = model["J_regressor"].toarray()
    v = model["v_template"]
    assert R.min() >= 0
    np.testing.assert_allclose(R.sum(axis=1), 1.0, atol=1e-9)
    joints = R @ v
    np.testing.assert_allclose(joints, S.NEUTRAL_JOINTS, atol=1e-3)
    np.testing.assert_allclose(model["J"], S.NEUTRAL_JOINTS, atol=1e-12)
    for j in range(24):
        support = np.flatnonzero(R[j] > 0)
        assert len(support) >= 8, "a joint is a weighted ring of vertices, not one vertex"
        assert np.linalg.norm(v[support] - S.NEUTRAL_JOINTS[j], axis=1).max() < 0.2
    # Left joints really are on the left (+x).
    for left, right in ((1, 2), (4, 5), (7, 8), (16, 17), (18, 19), (20, 21)):
        assert joints[left, 0] > 0 > joints[right, 0]


def test_skinning_weights_bind_parts_to_their_joints(model, labels):
    W = model["weights"]
    assert W.min() >= 0
    np.testing.assert_allclose(W.sum(axis=1), 1.0, atol=1e-9)
    expected = {
        "head": 15, "left_upper_arm": 16, "right_upper_arm": 17, "left_forearm": 18,
        "right_forearm": 19, "left_hand": 20, "right_hand": 21, "left_thigh": 1, "right_thigh": 2,
        "left_shin": 4, "right_shin": 5, "left_foot": 7, "right_foot": 8,
    }
    for part, joint in expected.items():
        dominant = np.argmax(W[_part(labels, part)], axis=1)
        if part.endswith("hand"):  # palm on the wrist joint, fingers on the hand joint
            assert np.mean(dominant == joint) > 0.3 and np.mean(np.isin(dominant, (joint, joint + 2))) > 0.8
        else:
            assert np.mean(dominant == joint) > 0.5, part
    v = model["v_template"]
    neck = _part(labels, "neck") & (v[:, 1] > S.NEUTRAL_JOINTS[12, 1]) & (v[:, 1] < S.NEUTRAL_JOINTS[15, 1] - 0.01)
    assert neck.sum() > 20 and np.all(np.argmax(W[neck], axis=1) == 12)
    assert set(np.unique(np.argmax(W[_part(labels, "neck")], axis=1))) <= {9, 12, 15}
    torso = np.argmax(W[_part(labels, "torso")], axis=1)
    assert set(np.unique(torso)) <= {0, 3, 6, 9, 13, 14}
    # Toes and fingers go to the foot / hand joints.
    assert np.argmax(W[S.LANDMARK_VERTEX_IDS["LBigToe"]]) == 10
    assert np.argmax(W[S.LANDMARK_VERTEX_IDS["left_fingertip"]]) == 22
    assert v[S.LANDMARK_VERTEX_IDS["left_fingertip"], 0] > 0.85


@pytest.mark.parametrize("axis", [1, 2])
def test_bending_the_left_elbow_moves_only_the_left_arm(smpl, model, labels, axis):
    rest = smpl().vertices[0].detach().numpy()
    body_pose = torch.zeros(1, 69)
    body_pose[0, (18 - 1) * 3 + axis] = np.pi / 2
    posed = smpl(body_pose=body_pose).vertices[0].detach().numpy()
    moved = np.linalg.norm(posed - rest, axis=1)
    left_shoulder_x = S.NEUTRAL_JOINTS[16, 0]
    assert np.all(rest[moved > 1e-3, 0] > left_shoulder_x - 0.02)
    assert np.all(rest[moved > 1e-3, 0] > S.NEUTRAL_JOINTS[18, 0] - 0.05), "only near the elbow"
    assert np.all(moved[_part(labels, "left_hand")] > 0.05)
    assert np.all(moved[_part(labels, "left_forearm")][rest[_part(labels, "left_forearm"), 0] > 0.5] > 0.05)
    arm = np.isin(labels, [S.PART_NAMES.index(p) for p in ("left_upper_arm", "left_forearm", "left_hand")])
    assert np.all(moved[~arm] < 1e-6)


def test_bending_the_left_knee_moves_only_the_left_lower_leg(smpl, labels):
    rest = smpl().vertices[0].detach().numpy()
    body_pose = torch.zeros(1, 69)
    body_pose[0, (4 - 1) * 3 + 0] = np.pi / 2
    posed = smpl(body_pose=body_pose).vertices[0].detach().numpy()
    moved = np.linalg.norm(posed - rest, axis=1) > 1e-3
    leg = np.isin(labels, [S.PART_NAMES.index(p) for p in ("left_thigh", "left_shin", "left_foot")])
    assert moved.any() and np.all(leg[moved])
    assert np.all(rest[moved, 1] < S.NEUTRAL_JOINTS[4, 1] + 0.05)
    assert np.all(moved[_part(labels, "left_foot")])


def test_stature_direction_changes_height_and_moves_joints(smpl):
    rest = smpl()
    h0 = _height(rest.vertices[0].detach().numpy())
    j0 = rest.joints[0, :24].detach().numpy()
    for sign in (+2.0, -2.0):
        betas = torch.zeros(1, 10)
        betas[0, 0] = sign
        out = smpl(betas=betas)
        h = _height(out.vertices[0].detach().numpy())
        j = out.joints[0, :24].detach().numpy()
        assert sign * (h - h0) > 0.08, "beta0 = +-2 changes stature by ~12 cm"
        assert abs(h - h0) < 0.2
        assert sign * (j0[7, 1] - j[7, 1]) > 0.02 and sign * (j0[8, 1] - j[8, 1]) > 0.02  # ankles
        assert sign * (j[15, 1] - j0[15, 1]) > 0.01  # head


def test_shape_directions_are_distinct_and_sensibly_sized(model):
    dirs = model["shapedirs"][:, :, :10]
    per_vertex = np.linalg.norm(dirs, axis=1)  # (6890, 10)
    assert np.all(per_vertex.max(axis=0) > 0.008), "every direction moves something by ~1 cm or more"
    assert np.all(per_vertex.max(axis=0) < 0.08)
    flat = dirs.reshape(-1, 10)
    unit = flat / np.linalg.norm(flat, axis=0)
    cosine = unit.T @ unit
    np.fill_diagonal(cosine, 0.0)
    assert np.abs(cosine).max() < 0.9


def test_shape_directions_move_regressed_joints_sensibly(model):
    R, v, dirs = model["J_regressor"], model["v_template"], model["shapedirs"]
    j0 = R @ v
    jk = [R @ (v + dirs[:, :, k]) for k in range(10)]
    assert jk[2][7, 1] < j0[7, 1] - 0.02 and jk[2][15, 1] == pytest.approx(j0[15, 1], abs=1e-3)  # legs
    assert jk[3][20, 0] > j0[20, 0] + 0.015 and jk[3][21, 0] < j0[21, 0] - 0.015  # arms
    assert jk[4][16, 0] > j0[16, 0] + 0.005 and jk[4][17, 0] < j0[17, 0] - 0.005  # shoulders
    assert jk[5][1, 0] > j0[1, 0] + 0.003 and jk[5][2, 0] < j0[2, 0] - 0.003  # hips
    assert jk[6][12, 1] > j0[12, 1] + 0.02 and jk[6][7, 1] == pytest.approx(j0[7, 1], abs=1e-3)  # torso
    assert jk[0][7, 1] < j0[7, 1] - 0.01 and jk[0][15, 1] > j0[15, 1] + 0.005  # stature


def test_landmark_vertices_sit_at_the_right_anatomy(model, labels):
    v = model["v_template"]
    ids = S.LANDMARK_VERTEX_IDS
    expected = {
        "nose": 332, "reye": 6260, "leye": 2800, "rear": 4071, "lear": 583, "LBigToe": 3216,
        "LSmallToe": 3226, "LHeel": 3387, "RBigToe": 6617, "RSmallToe": 6624, "RHeel": 6787,
    }
    for name, idx in expected.items():
        assert ids[name] == idx
    for name, idx in smplx.vertex_ids.vertex_ids["smplh"].items():
        if name in expected:
            assert expected[name] == idx
    head = v[_part(labels, "head")]
    for name in ("nose", "reye", "leye", "rear", "lear"):
        assert labels[ids[name]] == S.PART_NAMES.index("head")
    nose, leye, reye = v[ids["nose"]], v[ids["leye"]], v[ids["reye"]]
    lear, rear = v[ids["lear"]], v[ids["rear"]]
    assert abs(nose[0]) < 0.01 and nose[2] > head[:, 2].max() - 0.005
    assert leye[0] > 0.015 and reye[0] < -0.015
    assert leye[1] > nose[1] and reye[1] > nose[1]
    assert leye[2] > head[:, 2].mean() and reye[2] > head[:, 2].mean()
    assert lear[0] > leye[0] + 0.02 and rear[0] < reye[0] - 0.02
    assert lear[2] < leye[2] - 0.05 and rear[2] < reye[2] - 0.05
    for side, foot in (("L", "left_foot"), ("R", "right_foot")):
        big, small, heel = (v[ids[side + n]] for n in ("BigToe", "SmallToe", "Heel"))
        for n in ("BigToe", "SmallToe", "Heel"):
            assert labels[ids[side + n]] == S.PART_NAMES.index(foot)
        assert big[2] > heel[2] + 0.2 and small[2] > heel[2] + 0.15
        sign = 1.0 if side == "L" else -1.0
        assert sign * big[0] > 0 and sign * small[0] > sign * big[0]  # small toe is lateral
        assert heel[1] < -1.15
    assert v[ids["head_top"], 1] == pytest.approx(v[:, 1].max())


def test_deterministic_and_seeded(model):
    again = S.build_synthetic_body("neutral", seed=0)
    for key in ("v_template", "shapedirs", "weights", "f", "vert_sym_idxs"):
        np.testing.assert_array_equal(model[key], again[key])
    assert (model["J_regressor"] != again["J_regressor"]).nnz == 0
    other = S.build_synthetic_body("neutral", seed=7)
    delta = np.abs(other["v_template"] - model["v_template"]).max()
    assert 0 < delta < 0.01
    np.testing.assert_allclose(other["J_regressor"] @ other["v_template"], S.NEUTRAL_JOINTS, atol=1e-3)
    np.testing.assert_array_equal(other["f"], model["f"])


def test_symmetry_table_is_a_mirror_involution(model):
    sym = model["vert_sym_idxs"]
    v = model["v_template"]
    np.testing.assert_array_equal(sym[sym], np.arange(6890))
    mirrored = v[sym] * np.array([-1.0, 1.0, 1.0])
    assert np.abs(mirrored - v).max() < 0.03  # the designed joints are slightly asymmetric


def test_written_pickles_load_with_smplx(model_dir, model):
    for gender in ("neutral", "male", "female"):
        path = model_dir / f"SMPL_{gender.upper()}.pkl"
        with open(path, "rb") as handle:
            assert handle.read(2) == b"\x80\x02"  # pickle protocol 2
        with open(path, "rb") as handle:
            data = pickle.load(handle, encoding="latin1")
        for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f"):
            assert key in data
        body = smplx.SMPL(model_path=str(model_dir), gender=gender)
        out = body()
        assert out.vertices.shape == (1, 6890, 3)
        assert out.joints.shape[1] >= 24
        np.testing.assert_allclose(out.joints[0, :24].detach().numpy(), data["J"], atol=1e-3)
    with open(model_dir / "SMPL_NEUTRAL.pkl", "rb") as handle:
        neutral = pickle.load(handle, encoding="latin1")
    np.testing.assert_array_equal(neutral["v_template"], model["v_template"])
