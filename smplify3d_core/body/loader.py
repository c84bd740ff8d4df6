"""Reading SMPL model files (official ``.pkl`` with or without chumpy, ``.npz``).

The official SMPL pickles store some arrays as chumpy objects. chumpy does not
import on Python 3.11 / numpy 2, so :class:`_ChumpyFreeUnpickler` maps every
chumpy class to a small stand-in that keeps the pickled state, and the arrays
are read from that state (``state['x']``).
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse

SMPL_NUM_VERTICES = 6890
SMPL_NUM_JOINTS = 24
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
GENDERS = ("neutral", "male", "female")

_WEBSITE_NAMES = {
    "neutral": "basicmodel_neutral_lbs_10_207_0_v1.0.0.pkl",
    "male": "basicmodel_m_lbs_10_207_0_v1.0.0.pkl",
    "female": "basicmodel_f_lbs_10_207_0_v1.0.0.pkl",
}
DOWNLOAD_HINT = (
    "SMPL model files are licensed and not shipped: register at https://smpl.is.tue.mpg.de, "
    "download 'SMPL for Python' and point --smpl-model-path (the node's smpl_model_path) at the "
    "folder or file. For tests and demos, `smplify3d make-body-model --out DIR` writes a "
    "synthetic SMPL-format model."
)


class SMPLModelError(ValueError):
    """An SMPL model file is missing, unreadable or not in the SMPL layout."""


@dataclass
class SMPLModelData:
    """The arrays of an SMPL-format model (numpy, float64 unless noted).

    v_template: (V, 3) rest-pose vertices, metres. shapedirs: (V, 3, K) shape blend shapes.
    posedirs: (V, 3, 207) pose-corrective blend shapes. J_regressor: (24, V) dense.
    weights: (V, 24) skinning weights. parents: (24,) int64 with -1 for the root.
    faces: (F, 3) int64. gender and the source path are kept for messages.
    """

    v_template: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    faces: np.ndarray
    gender: str
    source: str

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[2])


class _ChumpyStandIn:
    """Takes the place of any chumpy class during unpickling and keeps its state."""

    def __init__(self, *args, **kwargs) -> None:
        self._state = None

    def __setstate__(self, state) -> None:
        self._state = state

    def to_array(self) -> np.ndarray:
        state = self._state
        if isinstance(state, dict) and "x" in state:
            return np.asarray(state["x"])
        raise SMPLModelError("a chumpy object in the model file holds no array ('x' missing from its state)")


class _ChumpyFreeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyStandIn
        return super().find_class(module, name)


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, _ChumpyStandIn):
        return value.to_array()
    if scipy.sparse.issparse(value):
        return np.asarray(value.toarray())
    return np.asarray(value)


def candidate_file_names(gender: str) -> list[str]:
    """File names searched for inside a model folder, in order."""
    upper = gender.upper()
    names = [f"SMPL_{upper}.pkl", f"SMPL_{upper}.npz", f"smpl/SMPL_{upper}.pkl", f"smpl/SMPL_{upper}.npz"]
    website = _WEBSITE_NAMES[gender]
    names += [website, f"models/{website}", f"smpl/models/{website}"]
    return names


def find_model_file(path, gender: str = "neutral") -> Path:
    """Resolve ``path`` (a model file or a folder holding one) to the file for ``gender``."""
    gender = gender.lower()
    if gender not in GENDERS:
        raise SMPLModelError(f"unknown gender {gender!r}; choose one of {GENDERS}")
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in candidate_file_names(gender):
            if (path / name).is_file():
                return path / name
        raise SMPLModelError(
            f"no SMPL model for gender {gender!r} in {path}: looked for "
            + ", ".join(candidate_file_names(gender))
            + ". " + DOWNLOAD_HINT
        )
    raise SMPLModelError(f"SMPL model path {path} does not exist. " + DOWNLOAD_HINT)


def _read_raw(file: Path) -> dict:
    try:
        if file.suffix == ".npz":
            with np.load(file, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        with open(file, "rb") as handle:
            return _ChumpyFreeUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, AttributeError, ImportError, IndexError) as error:
        raise SMPLModelError(
            f"could not read SMPL model file {file}: it is truncated or not an SMPL pickle/npz ({type(error).__name__}: {error})"
        ) from error


def load_smpl_data(path, gender: str = "neutral") -> SMPLModelData:
    """Load an SMPL-format model from a file or folder (see :func:`find_model_file`).

    Raises :class:`SMPLModelError` with the expected names and where to get the files
    when nothing is found, and a specific message for a truncated file, a missing key
    or a wrong shape.
    """
    file = find_model_file(path, gender)
    raw = _read_raw(file)
    if not isinstance(raw, dict):
        raise SMPLModelError(f"{file} does not hold a dict of model arrays (got {type(raw).__name__})")
    required = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
    missing = [key for key in required if key not in raw]
    if missing:
        raise SMPLModelError(f"{file} lacks the SMPL keys {missing}")
    arrays = {key: _to_numpy(raw[key]) for key in required}
    v_template = arrays["v_template"].astype(np.float64)
    if v_template.ndim != 2 or v_template.shape[1] != 3:
        raise SMPLModelError(f"{file}: v_template must be (V, 3), got {v_template.shape}")
    num_vertices = v_template.shape[0]
    if num_vertices != SMPL_NUM_VERTICES:
        raise SMPLModelError(
            f"{file}: an SMPL model has {SMPL_NUM_VERTICES} vertices, this one has {num_vertices} "
            "(SMPL-X, SMPL-H or MANO files are not supported)"
        )
    shapedirs = arrays["shapedirs"].astype(np.float64)
    posedirs = arrays["posedirs"].astype(np.float64)
    J_regressor = arrays["J_regressor"].astype(np.float64)
    weights = arrays["weights"].astype(np.float64)
    kintree = arrays["kintree_table"].astype(np.int64)
    faces = arrays["f"].astype(np.int64)
    checks = {
        "shapedirs": (shapedirs.ndim == 3 and shapedirs.shape[:2] == (num_vertices, 3), "(V, 3, K)"),
        "posedirs": (posedirs.shape == (num_vertices, 3, 207), "(V, 3, 207)"),
        "J_regressor": (J_regressor.shape == (SMPL_NUM_JOINTS, num_vertices), "(24, V)"),
        "weights": (weights.shape == (num_vertices, SMPL_NUM_JOINTS), "(V, 24)"),
        "kintree_table": (kintree.shape == (2, SMPL_NUM_JOINTS), "(2, 24)"),
        "f": (faces.ndim == 2 and faces.shape[1] == 3 and faces.min() >= 0 and faces.max() < num_vertices, "(F, 3) with ids < V"),
    }
    for key, (ok, expected) in checks.items():
        if not ok:
            raise SMPLModelError(f"{file}: {key} must be {expected}, got shape {getattr(arrays[key], 'shape', None)}")
    parents = kintree[0].copy()
    parents[0] = -1
    if tuple(parents.tolist()) != SMPL_PARENTS:
        raise SMPLModelError(f"{file}: kinematic tree {parents.tolist()} is not SMPL's {list(SMPL_PARENTS)}")
    for name, array in (("v_template", v_template), ("shapedirs", shapedirs), ("weights", weights)):
        if not np.all(np.isfinite(array)):
            raise SMPLModelError(f"{file}: {name} holds non-finite values")
    return SMPLModelData(v_template, shapedirs, posedirs, J_regressor, weights, parents, faces, gender.lower(), str(file))
