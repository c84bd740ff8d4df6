"""Scene folders: the research code's demo format (``data/demo``) plus the files this project adds.

A scene folder holds

* ``data.pkl`` — list of per-person dicts {sequence, time, tracking_id, pose3d (15,3) m,
  bbox2d_xywh [4 ints], human_points (N,3) m, img_file}; points and joints in the camera frame;
* ``2d_keypoints.json`` — {"camera": name, <tracking_id>: 17 × [x, y, score, lidar_visibility]};
* the image named by ``img_file``;
* ``camera.json`` — {"camera", "K" 3×3, "width", "height", "T_cam_lidar" 4×4}; optional when the
  camera is given from outside (:class:`CameraOptions`: ``--camera FILE``, ``--intrinsics FX FY CX CY``)
  or by the research results file below;
* optional ``init_smpl.json`` — {"persons": {<tracking_id>: SMPL parameters}} (initial estimates);
* optional ``smpl_<frame>.json`` — the research code's results file (as published in its
  ``data/demo``): {info {sequence, date_created, skeleton2d, camera_intrinsics 3×3}, image {image_id,
  file_name, width, height}, annotations}, where annotations is either a dict {<tracking_id>: {idx
  (index in the research data loader), bbox, keypoints 17×5, hmr {body_pose 69, betas 10,
  global_orient 3, global_t 3, joints3d 24×3}, reprojection_error, chamfer_distance}} (the published
  file) or a list of such entries whose ``idx`` is the tracking id (this project's ``smpl_<frame>.json``).
  Its ``hmr`` parameters (camera frame, ``global_t`` = SMPL ``transl``) are the initial estimates of
  persons that init_smpl.json does not list; its ``info.camera_intrinsics`` is the camera when there
  is neither camera.json nor a camera given from outside;
* optional ``ground_truth.json`` — {"persons": {<tracking_id>: {"smpl", "joints" 24×3}}} and
  ``ground_truth_vertices.npz`` (one (6890,3) array per tracking id);
* optional ``cloud.npz`` — the full scan: points_lidar (N,3) m, labels (N,).

Only one frame per folder is written; :func:`read_scene_folder` returns that frame.

The research demo folder as published (data.pkl, 2d_keypoints.json, the image, smpl_<frame>.json;
no camera.json) reads with the camera from its results file or from :class:`CameraOptions`, and,
when its points are in the LiDAR frame, the extrinsic of :class:`CameraOptions`.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from smplify3d_core.eval.io import DatasetError, image_size
from smplify3d_core.geometry.transforms import transform_points
from smplify3d_core.types import FrameObservation, PersonObservation, PersonTruth, PinholeCamera, SMPLParams

DATA_FILE = "data.pkl"
KEYPOINTS_FILE = "2d_keypoints.json"
CAMERA_FILE = "camera.json"
INIT_FILE = "init_smpl.json"
TRUTH_FILE = "ground_truth.json"
TRUTH_VERTICES_FILE = "ground_truth_vertices.npz"
CLOUD_FILE = "cloud.npz"
IMAGE_FILE = "image.png"
RESULTS_FILE = "smpl_{frame}.json"  # the research code's per-frame results, read as initial estimates
CAMERA_FLAGS_HELP = (
    "pass the intrinsics with --intrinsics FX FY CX CY (pixels; the image size is read from the image) or "
    "--camera FILE (JSON with \"camera_intrinsics\": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] or with fx, fy, cx, cy "
    "and optionally width, height)"
)


class SceneFolderError(ValueError):
    """A scene folder is missing a file or holds malformed content."""


def _write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=1))


def write_scene_folder(frame: FrameObservation, out_dir, camera_name: str = "camera",
                       cloud_labels: Optional[np.ndarray] = None) -> Path:
    """Write ``frame`` as a scene folder and return the folder path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_file = IMAGE_FILE
    if frame.image is not None:
        cv2.imwrite(str(out / image_file), cv2.cvtColor(np.ascontiguousarray(frame.image), cv2.COLOR_RGB2BGR))
    records = []
    keypoints = {"camera": camera_name}
    for person in frame.persons:
        records.append({
            "sequence": frame.sequence,
            "time": frame.frame_id,
            "tracking_id": person.tracking_id,
            "pose3d": None if person.pose3d is None else person.pose3d.astype(np.float64),
            "bbox2d_xywh": [int(round(v)) for v in person.bbox_xywh],
            "human_points": person.points.astype(np.float64),
            "img_file": image_file,
        })
        keypoints[person.tracking_id] = np.column_stack([person.keypoints, person.lidar_visibility]).tolist()
    with open(out / DATA_FILE, "wb") as handle:
        pickle.dump(records, handle, protocol=4)
    _write_json(out / KEYPOINTS_FILE, keypoints)
    _write_json(out / CAMERA_FILE, {
        "camera": camera_name, "K": frame.camera.K.tolist(), "width": frame.camera.width,
        "height": frame.camera.height, "T_cam_lidar": frame.T_cam_lidar.tolist(),
    })
    inits = {p.tracking_id: p.init.to_dict() for p in frame.persons if p.init is not None}
    if inits:
        _write_json(out / INIT_FILE, {"sequence": frame.sequence, "time": frame.frame_id, "persons": inits})
    if frame.truth:
        _write_json(out / TRUTH_FILE, {
            "sequence": frame.sequence, "time": frame.frame_id,
            "persons": {tid: {"smpl": t.smpl.to_dict(), "joints": t.joints.tolist()} for tid, t in frame.truth.items()},
        })
        np.savez_compressed(out / TRUTH_VERTICES_FILE, **{tid: t.vertices.astype(np.float32) for tid, t in frame.truth.items()})
    if frame.cloud_lidar is not None:
        labels = np.full(len(frame.cloud_lidar), -1, dtype=np.int32) if cloud_labels is None else np.asarray(cloud_labels,
                                                                                                             dtype=np.int32)
        np.savez_compressed(out / CLOUD_FILE, points_lidar=frame.cloud_lidar.astype(np.float32), labels=labels)
    return out


def _require(folder: Path, name: str, what: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise SceneFolderError(f"scene folder {folder} lacks {name} ({what})")
    return path


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SceneFolderError(f"{path} is not valid JSON: {error}") from error



def read_camera_file(path: Path) -> tuple[PinholeCamera, np.ndarray, str]:
    """camera.json -> (camera, T_cam_lidar (4,4), camera name)."""
    payload = _read_json(path)
    try:
        camera = PinholeCamera(np.asarray(payload["K"], dtype=np.float64), payload["width"], payload["height"])
        T = np.asarray(payload.get("T_cam_lidar", np.eye(4)), dtype=np.float64)
    except KeyError as error:
        raise SceneFolderError(f"{path} lacks the key {error}") from error
    except ValueError as error:
        raise SceneFolderError(f"{path}: {error}") from error
    return camera, T, str(payload.get("camera", "camera"))


@dataclass
class CameraOptions:
    """The camera of scene folders given from outside the folder (``--camera``, ``--intrinsics``, ``--extrinsic``).

    K: (3, 3) intrinsics, pixels, or None to keep the folder's own camera; width, height: image size,
    pixels, or None to read it from the image; T_cam_points: (4, 4) rigid transform taking the
    points and joints of data.pkl (``human_points``, ``pose3d``, metres) into the camera frame (the
    LiDAR -> camera extrinsic), or None when they are already in the camera frame (the research
    demo format); source: the flag or file it came from, for messages.
    """

    K: Optional[np.ndarray] = None
    width: Optional[int] = None
    height: Optional[int] = None
    T_cam_points: Optional[np.ndarray] = None
    source: str = ""


def _intrinsics_matrix(payload: dict, path: Path) -> Optional[np.ndarray]:
    """(3, 3) K from a JSON object: ``camera_intrinsics`` / ``K`` (3×3), or ``fx, fy, cx, cy``; None if none."""
    for key in ("camera_intrinsics", "K"):
        value = payload.get(key)
        if value is not None and np.size(value) > 0:  # the research template writes [] when unknown
            try:
                K = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError) as error:
                raise SceneFolderError(f"{path}: {key!r} is not a 3x3 matrix of numbers ({error})") from error
            if K.shape != (3, 3):
                raise SceneFolderError(f"{path}: {key!r} must be a 3x3 matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], "
                                       f"got shape {K.shape}")
            return K
    names = ("fx", "fy", "cx", "cy")
    if any(name in payload for name in names):
        missing = [name for name in names if name not in payload]
        if missing:
            raise SceneFolderError(f"{path}: intrinsics need fx, fy, cx, cy (pixels); {', '.join(missing)} missing")
        try:
            fx, fy, cx, cy = (float(payload[name]) for name in names)
        except (TypeError, ValueError) as error:
            raise SceneFolderError(f"{path}: fx, fy, cx, cy must be numbers ({error})") from error
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return None


def _image_size_entry(payload: dict, path: Path) -> Optional[Tuple[int, int]]:
    """(width, height) pixels from ``width``/``height`` or ``image: {width, height}``; None if absent or unset (<= 0)."""
    for holder in (payload, payload.get("image") if isinstance(payload.get("image"), dict) else {}):
        if "width" in holder and "height" in holder:
            try:
                width, height = int(holder["width"]), int(holder["height"])
            except (TypeError, ValueError) as error:
                raise SceneFolderError(f"{path}: width and height must be integers (pixels) ({error})") from error
            if width > 0 and height > 0:
                return width, height
    return None


def read_intrinsics_file(path) -> CameraOptions:
    """``--camera FILE``: a JSON file with the intrinsics -> :class:`CameraOptions` (no extrinsic).

    Accepted layouts: ``{"camera_intrinsics": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]}`` (the research
    code's; also under ``"info"``, so a research ``smpl_<frame>.json`` works too),
    ``{"K": 3×3}`` (this project's camera.json) or ``{"fx", "fy", "cx", "cy"}`` (pixels); optional
    ``"width"``/``"height"`` (or ``"image": {"width", "height"}``) give the image size, else it is
    read from the image.
    """
    path = Path(path)
    if not path.is_file():
        raise SceneFolderError(f"--camera: {path} does not exist")
    payload = _read_json(path)
    if not isinstance(payload, dict):
        raise SceneFolderError(f"--camera: {path} must hold a JSON object with the intrinsics")
    K = _intrinsics_matrix(payload, path)
    if K is None and isinstance(payload.get("info"), dict):
        K = _intrinsics_matrix(payload["info"], path)
    if K is None:
        raise SceneFolderError(f"--camera: {path} holds no intrinsics; expected \"camera_intrinsics\": "
                               "[[fx, 0, cx], [0, fy, cy], [0, 0, 1]], \"K\" (3x3) or fx, fy, cx, cy")
    size = _image_size_entry(payload, path)
    return CameraOptions(K=K, width=size[0] if size else None, height=size[1] if size else None,
                         source=f"--camera {path}")


def read_extrinsic_file(path) -> np.ndarray:
    """``--extrinsic FILE``: the (4, 4) LiDAR -> camera transform (metres) from .json, .npy or .txt.

    JSON: a 4×4 (or 3×4) nested list, or an object with it under ``"extrinsic"``, ``"T_cam_lidar"``
    or ``"lidar2cam"``; .npy: a (4, 4) or (3, 4) array; .txt (any other suffix): whitespace-separated
    rows (``numpy.loadtxt``). The rotation must be orthonormal.
    """
    path = Path(path)
    if not path.is_file():
        raise SceneFolderError(f"--extrinsic: {path} does not exist")
    try:
        if path.suffix.lower() == ".json":
            payload = _read_json(path)
            if isinstance(payload, dict):
                key = next((k for k in ("extrinsic", "T_cam_lidar", "lidar2cam") if k in payload), None)
                if key is None:
                    raise SceneFolderError(f"--extrinsic: {path} holds no \"extrinsic\" / \"T_cam_lidar\" / "
                                           "\"lidar2cam\" 4x4 matrix")
                payload = payload[key]
            T = np.asarray(payload, dtype=np.float64)
        elif path.suffix.lower() == ".npy":
            T = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
        else:
            T = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (ValueError, TypeError, OSError) as error:
        raise SceneFolderError(f"--extrinsic: {path} is not a 4x4 matrix of numbers ({error})") from error
    if T.shape == (3, 4):
        T = np.vstack([T, [0.0, 0.0, 0.0, 1.0]])
    if T.shape != (4, 4):
        raise SceneFolderError(f"--extrinsic: {path} must hold a 4x4 (or 3x4) LiDAR -> camera matrix, got shape {T.shape}")
    R = T[:3, :3]
    if not np.all(np.isfinite(T)) or not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or not np.allclose(T[3], [0, 0, 0, 1]):
        raise SceneFolderError(f"--extrinsic: {path} is not a rigid transform (orthonormal rotation, last row 0 0 0 1)")
    return T


def camera_options(camera_file=None, intrinsics: Optional[Sequence[float]] = None,
                   extrinsic_file=None) -> Optional[CameraOptions]:
    """:class:`CameraOptions` from the command-line values (None when none is given).

    camera_file: ``--camera`` JSON (:func:`read_intrinsics_file`); intrinsics: ``--intrinsics``
    (fx, fy, cx, cy) pixels; extrinsic_file: ``--extrinsic`` (:func:`read_extrinsic_file`).
    ``--camera`` and ``--intrinsics`` exclude each other.
    """
    if camera_file is not None and intrinsics is not None:
        raise ValueError("give the camera either with --camera FILE or with --intrinsics FX FY CX CY, not both")
    options = None
    if camera_file is not None:
        options = read_intrinsics_file(camera_file)
    elif intrinsics is not None:
        values = [float(v) for v in intrinsics]
        if len(values) != 4:
            raise ValueError(f"--intrinsics needs four numbers FX FY CX CY (pixels), got {len(values)}")
        fx, fy, cx, cy = values
        options = CameraOptions(K=np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]),
                                source="--intrinsics " + " ".join(f"{v:g}" for v in values))
    if extrinsic_file is not None:
        options = options or CameraOptions()
        options.T_cam_points = read_extrinsic_file(extrinsic_file)
        options.source = (options.source + f" --extrinsic {extrinsic_file}").strip()
    return options


def _hmr_params(hmr, path: Path, tid: str) -> Optional[SMPLParams]:
    """SMPLParams from a research ``hmr`` block (``global_t`` = transl); None when it is left empty."""
    if not isinstance(hmr, dict):
        raise SceneFolderError(f"{path}: annotation of {tid!r} lacks its \"hmr\" block (SMPL parameters)")
    keys = ("global_orient", "body_pose", "betas", "global_t")
    missing = [k for k in keys if k not in hmr]
    if missing:
        raise SceneFolderError(f"{path}: \"hmr\" of {tid!r} lacks {', '.join(missing)}")
    if all(np.size(hmr[k]) == 0 for k in keys):  # the research template's empty entry: no estimate
        return None
    try:
        return SMPLParams(hmr["global_orient"], hmr["body_pose"], hmr["betas"], hmr["global_t"])
    except (ValueError, TypeError) as error:
        raise SceneFolderError(f"{path}: \"hmr\" of {tid!r}: {error}") from error


def read_research_results(path) -> Tuple[Dict[str, SMPLParams], Optional[np.ndarray], Optional[Tuple[int, int]]]:
    """A research ``smpl_<frame>.json`` -> ({tracking_id: SMPLParams}, K (3, 3) or None, (width, height) or None).

    ``annotations`` as a dict is keyed by tracking id (the published file; its ``idx`` is the index
    in the research data loader, not the tracking id); as a list, each entry's ``idx`` is the
    tracking id (this project's results). K comes from ``info.camera_intrinsics`` (None when
    absent or left empty), the size from ``image.width``/``image.height``.
    """
    path = Path(path)
    payload = _read_json(path)
    annotations = payload.get("annotations") if isinstance(payload, dict) else None
    if isinstance(annotations, dict):
        entries = [(str(tid), value) for tid, value in annotations.items()]
    elif isinstance(annotations, list):
        try:
            entries = [(str(value["idx"]), value) for value in annotations]
        except (KeyError, TypeError) as error:
            raise SceneFolderError(f"{path}: each entry of the \"annotations\" list needs its tracking id as \"idx\"") from error
    else:
        raise SceneFolderError(f"{path} is not a research results file: expected \"annotations\" "
                               "({tracking_id: {..., hmr}} or [{idx, ..., hmr}])")
    inits = {}
    for tid, value in entries:
        params = _hmr_params(value.get("hmr") if isinstance(value, dict) else None, path, tid)
        if params is not None:
            inits[tid] = params
    info = payload.get("info") if isinstance(payload.get("info"), dict) else {}
    return inits, _intrinsics_matrix(info, path), _image_size_entry(payload, path)


def _resolve_camera(folder: Path, options: Optional[CameraOptions], results: Optional[tuple],
                    image_path: Optional[Path], results_path: Path) -> Tuple[PinholeCamera, np.ndarray, str]:
    """The frame's camera, T_cam_lidar and where the camera came from (for messages).

    Order: the intrinsics of ``options`` (``--camera`` / ``--intrinsics``), camera.json, the results
    file's ``info.camera_intrinsics``; the image size from the same source, else from the image.
    T_cam_lidar: ``options.T_cam_points``, else camera.json's, else identity.
    """
    camera_json = folder / CAMERA_FILE
    folder_camera, T, source = None, np.eye(4), ""
    if camera_json.is_file():
        folder_camera, T, _ = read_camera_file(camera_json)
    K, size = None, None
    if options is not None and options.K is not None:
        K, source = options.K, options.source
        size = (options.width, options.height) if options.width and options.height else None
    elif folder_camera is not None:
        return folder_camera, (options.T_cam_points if options and options.T_cam_points is not None else T), str(camera_json)
    elif results is not None and results[1] is not None:
        K, size, source = results[1], results[2], f"{results_path} (info.camera_intrinsics)"
    else:
        looked = f"{CAMERA_FILE}" + (f" nor camera_intrinsics in {results_path.name}" if results is not None else "")
        raise SceneFolderError(f"scene folder {folder} has no camera (no {looked}): {CAMERA_FLAGS_HELP}")
    if size is None:
        if image_path is None or not image_path.is_file():
            raise SceneFolderError(f"the camera from {source} has no image size and the image "
                                   f"{image_path if image_path else '(no img_file in data.pkl)'} is missing to read it from; "
                                   "give width and height in the --camera file")
        try:
            size = image_size(image_path)
        except DatasetError as error:
            raise SceneFolderError(str(error)) from error
    try:
        camera = PinholeCamera(np.asarray(K, dtype=np.float64), size[0], size[1])
    except ValueError as error:
        raise SceneFolderError(f"camera from {source}: {error}") from error
    if options is not None and options.T_cam_points is not None:
        T = options.T_cam_points
    return camera, T, source


def read_scene_folder(folder, load_image: bool = True, require_keypoints: bool = True,
                      camera: Optional[CameraOptions] = None) -> FrameObservation:
    """Load a scene folder (with or without init and ground truth) into a FrameObservation.

    ``require_keypoints=False`` accepts a folder without 2d_keypoints.json (keypoints to be
    computed from the image): its persons get zero keypoints with confidence 0.
    ``camera``: intrinsics and/or extrinsic given from outside (:class:`CameraOptions`); its
    intrinsics replace camera.json's, and with ``T_cam_points`` the points and joints of data.pkl
    are moved from the LiDAR into the camera frame. Without camera.json and without ``camera``
    intrinsics, the research results file ``smpl_<frame>.json`` must give ``info.camera_intrinsics``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SceneFolderError(f"scene folder {folder} does not exist")
    data_path = _require(folder, DATA_FILE, "per-person LiDAR points, boxes and 3D joints")
    if require_keypoints or (folder / KEYPOINTS_FILE).is_file():
        keypoints = _read_json(_require(folder, KEYPOINTS_FILE, "per-person 2D keypoints"))
    else:
        keypoints = None
    try:
        with open(data_path, "rb") as handle:
            records = pickle.load(handle)
    except (pickle.UnpicklingError, EOFError) as error:
        raise SceneFolderError(f"{data_path} is truncated or not a pickle: {error}") from error
    if not isinstance(records, list) or not records:
        raise SceneFolderError(f"{data_path} must hold a non-empty list of per-person records")
    times = sorted({str(r["time"]) for r in records})
    if len(times) > 1:
        raise SceneFolderError(f"{data_path} holds frames {times}; a scene folder holds exactly one frame")
    results_path = folder / RESULTS_FILE.format(frame=times[0])
    results = read_research_results(results_path) if results_path.is_file() else None
    image_name = records[0].get("img_file")
    image_path = folder / image_name if image_name else None
    camera_model, T_cam_lidar, camera_source = _resolve_camera(folder, camera, results, image_path, results_path)
    T_points = camera.T_cam_points if camera is not None else None
    inits = _read_json(folder / INIT_FILE).get("persons", {}) if (folder / INIT_FILE).is_file() else {}
    result_inits = results[0] if results is not None else {}  # for persons that init_smpl.json does not list
    persons = []
    for record in records:
        tid = str(record["tracking_id"])
        if keypoints is None:
            kp = np.zeros((17, 4))
        elif tid not in keypoints:
            raise SceneFolderError(f"{folder / KEYPOINTS_FILE} has no keypoints for tracking id {tid!r} listed in {DATA_FILE}")
        else:
            kp = np.asarray(keypoints[tid], dtype=np.float64)
        if kp.shape != (17, 4):
            raise SceneFolderError(f"{folder / KEYPOINTS_FILE}: keypoints of {tid!r} must be "
                                   f"17 x [x, y, score, lidar_visibility], got shape {kp.shape}")
        points = np.asarray(record["human_points"], dtype=np.float64).reshape(-1, 3)
        pose3d = None if record.get("pose3d") is None else np.asarray(record["pose3d"], dtype=np.float64)
        if T_points is not None:  # data.pkl in the LiDAR frame: into the camera frame
            points = transform_points(T_points, points)
            pose3d = None if pose3d is None else transform_points(T_points, pose3d)
        persons.append(PersonObservation(
            tracking_id=tid,
            bbox_xywh=np.asarray(record["bbox2d_xywh"], dtype=np.float64),
            keypoints=kp[:, :3],
            lidar_visibility=kp[:, 3],
            points=points,
            init=SMPLParams.from_dict(inits[tid]) if tid in inits else result_inits.get(tid),
            pose3d=pose3d,
        ))
    image = None
    if load_image and image_name:
        image_path = _require(folder, image_name, "the camera image named by img_file")
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SceneFolderError(f"{image_path} is not a readable image")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if image.shape[:2] != (camera_model.height, camera_model.width):
            raise SceneFolderError(f"{image_path} is {image.shape[1]}x{image.shape[0]} but the camera from {camera_source} "
                                   f"says {camera_model.width}x{camera_model.height}")
    truth = None
    if (folder / TRUTH_FILE).is_file():
        truth_json = _read_json(folder / TRUTH_FILE)["persons"]
        vertices = {}
        if (folder / TRUTH_VERTICES_FILE).is_file():
            with np.load(folder / TRUTH_VERTICES_FILE) as archive:
                vertices = {k: archive[k].astype(np.float64) for k in archive.files}
        truth = {
            tid: PersonTruth(tid, SMPLParams.from_dict(t["smpl"]), vertices.get(tid, np.zeros((0, 3))), np.asarray(t["joints"]))
            for tid, t in truth_json.items()
        }
    cloud = None
    if (folder / CLOUD_FILE).is_file():
        with np.load(folder / CLOUD_FILE) as archive:
            cloud = archive["points_lidar"].astype(np.float64)
    return FrameObservation(
        sequence=str(records[0].get("sequence", folder.name)), frame_id=times[0], camera=camera_model,
        T_cam_lidar=T_cam_lidar, persons=persons, image=image, image_file=image_name, cloud_lidar=cloud, truth=truth,
    )
