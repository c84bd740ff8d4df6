"""Loading SMPL-format files: official chumpy pickles, npz, folders, genders, bad files."""
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse

from smplify3d_core.body.loader import SMPLModelError, find_model_file, load_smpl_data


def _official_layout(data):
    """The dict an official SMPL pickle holds, built from loaded data (plain numpy)."""
    kintree = np.stack([np.where(data.parents < 0, 4294967295, data.parents), np.arange(24)])
    return {
        "v_template": data.v_template, "shapedirs": data.shapedirs, "posedirs": data.posedirs,
        "J_regressor": scipy.sparse.csc_matrix(data.J_regressor), "weights": data.weights,
        "kintree_table": kintree, "f": data.faces.astype(np.uint32), "bs_style": "lbs", "bs_type": "lrotmin",
    }


@pytest.fixture(scope="module")
def reference(body_model_dir):
    return load_smpl_data(body_model_dir, "neutral")


def _write_chumpy_pickle(path, layout):
    """Write ``layout`` the way the official files are: some arrays wrapped in chumpy.ch.Ch."""
    chumpy = types.ModuleType("chumpy")
    chumpy_ch = types.ModuleType("chumpy.ch")

    class Ch:  # imitates chumpy's pickled state: the array lives under 'x'
        def __init__(self, x):
            self.x = x

        def __getstate__(self):
            return {"x": self.x, "_dirty_vars": set(), "_itr": None}

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    chumpy_ch.Ch = Ch
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = chumpy, chumpy_ch
    try:
        wrapped = dict(layout)
        for key in ("v_template", "shapedirs", "posedirs", "weights"):
            wrapped[key] = Ch(layout[key])
        with open(path, "wb") as handle:
            pickle.dump(wrapped, handle, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def test_chumpy_pickle_loads_without_chumpy_and_equals_numpy_original(tmp_path, reference):
    _write_chumpy_pickle(tmp_path / "SMPL_NEUTRAL.pkl", _official_layout(reference))
    assert "chumpy" not in sys.modules
    loaded = load_smpl_data(tmp_path)
    for name in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "faces", "parents"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(reference, name), err_msg=name)


def test_npz_and_website_file_names(tmp_path, reference):
    layout = _official_layout(reference)
    layout["J_regressor"] = reference.J_regressor
    np.savez(tmp_path / "SMPL_MALE.npz", **{k: v for k, v in layout.items() if not isinstance(v, str)})
    with open(tmp_path / "basicmodel_f_lbs_10_207_0_v1.0.0.pkl", "wb") as handle:
        pickle.dump(_official_layout(reference), handle, protocol=2)
    (tmp_path / "smpl").mkdir()
    with open(tmp_path / "smpl" / "SMPL_NEUTRAL.pkl", "wb") as handle:
        pickle.dump(_official_layout(reference), handle, protocol=2)
    assert find_model_file(tmp_path, "male").name == "SMPL_MALE.npz"
    assert find_model_file(tmp_path, "female").name == "basicmodel_f_lbs_10_207_0_v1.0.0.pkl"
    assert find_model_file(tmp_path, "neutral") == tmp_path / "smpl" / "SMPL_NEUTRAL.pkl"
    for gender in ("male", "female", "neutral"):
        data = load_smpl_data(tmp_path, gender)
        assert data.gender == gender
        np.testing.assert_allclose(data.v_template, reference.v_template, atol=1e-9)  # metres; coordinates cross 0


def test_genders_differ_in_the_synthetic_model(body_model_dir):
    heights = {}
    for gender in ("neutral", "male", "female"):
        v = load_smpl_data(body_model_dir, gender).v_template
        heights[gender] = v[:, 1].max() - v[:, 1].min()
    assert heights["female"] < heights["neutral"] < heights["male"]


def test_missing_model_names_expected_files_and_where_to_get_them(tmp_path):
    with pytest.raises(SMPLModelError) as error:
        load_smpl_data(tmp_path)
    message = str(error.value)
    assert "SMPL_NEUTRAL.pkl" in message and "basicmodel_neutral_lbs_10_207_0_v1.0.0.pkl" in message
    assert "smpl.is.tue.mpg.de" in message
    with pytest.raises(SMPLModelError, match="does not exist"):
        load_smpl_data(tmp_path / "nowhere.pkl")
    with pytest.raises(SMPLModelError, match="unknown gender"):
        load_smpl_data(tmp_path, "robot")


def test_truncated_file_is_a_clear_error(tmp_path, body_model_dir):
    blob = (body_model_dir / "SMPL_NEUTRAL.pkl").read_bytes()
    (tmp_path / "SMPL_NEUTRAL.pkl").write_bytes(blob[: len(blob) // 3])
    with pytest.raises(SMPLModelError, match="truncated"):
        load_smpl_data(tmp_path)


def test_too_few_vertices_and_missing_keys_are_rejected(tmp_path, reference):
    layout = _official_layout(reference)
    small = dict(layout, v_template=reference.v_template[:5000])
    with open(tmp_path / "small.pkl", "wb") as handle:
        pickle.dump(small, handle)
    with pytest.raises(SMPLModelError, match="6890 vertices"):
        load_smpl_data(tmp_path / "small.pkl")
    del layout["weights"]
    with open(tmp_path / "noweights.pkl", "wb") as handle:
        pickle.dump(layout, handle)
    with pytest.raises(SMPLModelError, match="weights"):
        load_smpl_data(tmp_path / "noweights.pkl")
