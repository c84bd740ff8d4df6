"""The node's ROS parameters, generated from typed settings with a descriptor each.

Two settings trees make up the parameters: :class:`NodeConfig` (topics, synchronization,
extrinsics, outputs: the ROS side) and :class:`~smplify3d_core.pipeline_config.PipelineConfig`
(the frame path, shared with ``smplify3d-bag process`` and the CLI). Every field is declared with
a ``ParameterDescriptor`` (description, type, range or allowed values), so ``ros2 param
describe /smplify3d_node <name>`` documents it; nested sections become dotted names
(``proposals.cluster_distance``), which a params file writes nested. ``config/robot.yaml`` lists
them all with their defaults. They are read-only: set them at start-up (params file, ``-p``).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import List, Sequence, Tuple

from smplify3d_core.pipeline_config import PipelineConfig
from smplify3d_ros.markers import INVALID_MARKERS
from smplify3d_core.typed_config import ConfigError, FieldSpec, check_value, flatten_fields, section_from_dict, setting

IDENTITY_4X4 = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


@dataclass
class NodeConfig:
    """The ROS side of ``smplify3d_node``: inputs, frames and extrinsics, outputs."""

    autostart: bool = setting(True, "configure and activate at start-up; false: stay unconfigured until a lifecycle "
                                    "manager drives it (ros2 lifecycle set /smplify3d_node configure, activate)")
    image_topic: str = setting("/camera/image_raw", "sensor_msgs/Image topic (rgb8, bgr8, mono8, mono16, ...), rectified")
    compressed_image: bool = setting(False, "subscribe to <image_topic>/compressed (sensor_msgs/CompressedImage)")
    camera_info_topic: str = setting("/camera/camera_info", "sensor_msgs/CameraInfo topic (K of the rectified image)")
    cloud_topic: str = setting("/lidar/points", "sensor_msgs/PointCloud2 topic, LiDAR frame, any field layout")
    observations_topic: str = setting("", "smplify3d_ros/ObservationArray topic with external keypoints and initial "
                                          "estimates; empty: ViTPose and CLIFF find the persons")
    sync_queue_size: int = setting(10, "approximate-time synchronizer queue per input", min=1, max=1000)
    sync_slop: float = setting(0.05, "image, cloud (and observations) stamps must be this close, seconds", min=0, max=10)
    sync_backend: str = setting("auto", "approximate-time synchronizer: auto (message_filters when installed, else "
                                        "builtin), message_filters, or builtin (the project's own)",
                                choices=("auto", "message_filters", "builtin"))
    sync_time_jump: float = setting(1.0, "a stamp this many seconds older than the newest on its topic is a jump back "
                                         "in time (looping bag, restarted simulator, clock step): the synchronizer "
                                         "starts again and a warning is logged", min=0.001, max=86400)
    max_stamp_future: float = setting(10.0, "messages stamped more than this many seconds ahead of the node's clock are "
                                            "dropped (a sensor with a bad clock; built-in synchronizer); 0: no check",
                                      min=0, max=1e9)
    input_timeout: float = setting(3.0, "/diagnostics goes WARN when no synchronized frame arrived for this many "
                                        "seconds (ERROR: frames arrive but none was fitted for as long)", min=0.1, max=3600)
    observation_wait: float = setting(1.0, "observations mode: how long the worker waits for the image's "
                                           "ObservationArray when the frame came first, seconds", min=0, max=30)
    reliable_inputs: bool = setting(False, "false: sensor-data QoS (best effort); true: reliable, for large raw images")
    camera_frame: str = setting("", "camera optical frame of the TF lookups and of the outputs (unless "
                                    "target_frame); set: it overrides the image's header.frame_id, empty: that "
                                    "frame_id is used")
    lidar_frame: str = setting("", "LiDAR frame of the TF lookup; set: it overrides the cloud's header.frame_id, "
                                   "empty: that frame_id is used")
    tracking_frame: str = setting("", "fixed frame the tracker follows the people in (e.g. odom): camera -> it is looked "
                                      "up on TF at each image's stamp (no transform: the frame is skipped); empty: "
                                      "the camera frame, so the robot's own motion looks like the people's motion to "
                                      "the tracker")
    target_frame: str = setting("", "frame of the published bodies (~/smpl, ~/markers; e.g. odom, base_link): "
                                    "camera -> it is looked up on TF at each image's stamp (no transform: the frame "
                                    "is skipped); empty: the camera optical frame. ~/overlay stays in the image")
    extrinsics_source: str = setting("tf", "camera <- LiDAR transform from tf (/tf, /tf_static: tf2_ros, else the "
                                           "built-in listener) or static (T_cam_lidar)", choices=("tf", "static"))
    tf_backend: str = setting("auto", "TF client in tf mode: auto (tf2_ros when installed, else builtin), tf2_ros, or "
                                      "builtin (the project's own /tf and /tf_static listener)",
                              choices=("auto", "tf2_ros", "builtin"))
    T_cam_lidar: Tuple[float, ...] = setting(IDENTITY_4X4, "row-major 4x4 LiDAR -> camera optical frame; used only "
                                                           "with extrinsics_source static")
    tf_timeout: float = setting(0.05, "seconds to wait for a transform before skipping the frame", min=0, max=10)
    output_hold: float = setting(1.0, "with tracker.output_lag_frames 1: a fitted frame waits for the next one to be "
                                      "published; when no new frame has been fitted for this many seconds the "
                                      "waiting frame is published as it is (the end of a stream)", min=0.05, max=3600)
    publish_vertices: bool = setting(False, "fill SMPL.vertices (6890 points per person)")
    publish_markers: bool = setting(True, "publish ~/markers: one TRIANGLE_LIST mesh per person")
    invalid_markers: str = setting("hide", "bodies that are not valid (the verdict rejected them): hide (no marker) "
                                           "or grey (a translucent grey mesh)", choices=INVALID_MARKERS)
    publish_overlay: bool = setting(False, "publish ~/overlay: the meshes drawn on the image (slower)")


def parameter_specs() -> List[FieldSpec]:
    """Every node parameter: the NodeConfig fields, then the PipelineConfig ones (dotted names)."""
    return flatten_fields(NodeConfig) + flatten_fields(PipelineConfig)


def parameter_descriptor(spec: FieldSpec):
    """The ``rcl_interfaces/ParameterDescriptor`` of a setting: description, type, range, allowed values."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    types = {"bool": ParameterType.PARAMETER_BOOL, "int": ParameterType.PARAMETER_INTEGER,
             "float": ParameterType.PARAMETER_DOUBLE, "str": ParameterType.PARAMETER_STRING,
             "float_list": ParameterType.PARAMETER_DOUBLE_ARRAY}
    # read_only: the node builds its pipeline from the parameters at start-up; a later change would not apply
    descriptor = ParameterDescriptor(name=spec.name, type=types[spec.kind], description=spec.doc, read_only=True)
    if spec.choices:
        descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.kind == "int" and (spec.min is not None or spec.max is not None):
        descriptor.integer_range = [IntegerRange(from_value=int(-2**62 if spec.min is None else spec.min),
                                                 to_value=int(2**62 if spec.max is None else spec.max), step=0)]
    if spec.kind == "float" and (spec.min is not None or spec.max is not None):
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(-sys.float_info.max if spec.min is None else spec.min),
            to_value=float(sys.float_info.max if spec.max is None else spec.max), step=0.0)]
    return descriptor


def _ros_default(spec: FieldSpec):
    return list(spec.default) if spec.kind == "float_list" else spec.default


def declare_node_parameters(node) -> Tuple[NodeConfig, PipelineConfig]:
    """Declare every parameter on ``node`` and read the values back as checked settings.

    Raises ConfigError with one line naming the parameter, the value and what is allowed when a
    value (from a params file or ``--ros-args -p``) has the wrong type or is out of range.
    """
    values = {}
    for spec in parameter_specs():
        try:
            value = node.declare_parameter(spec.name, _ros_default(spec), parameter_descriptor(spec)).value
        except Exception as error:  # rclpy's InvalidParameterValueException / InvalidParameterTypeException
            raise ConfigError(f"parameter {spec.name}: {error.__class__.__name__}: {error}; allowed: "
                              f"{spec.allowed()}") from error
        values[spec.name] = check_value(spec, value, source="parameter")
    return _nested(NodeConfig, values, ""), _nested(PipelineConfig, values, "")


def _nested(cls, values: dict, prefix: str):
    """The settings of ``cls`` from the flat {dotted name: value} mapping."""
    data: dict = {}
    for spec in flatten_fields(cls):
        target = data
        for part in spec.path[:-1]:
            target = target.setdefault(part, {})
        value = values[spec.name]
        target[spec.path[-1]] = list(value) if isinstance(value, tuple) else value
    return section_from_dict(cls, data, source="parameters")


#: Parameters every rclpy node accepts besides its own.
STANDARD_PARAMETERS = ("use_sim_time", "start_type_description_service")


def _flatten_yaml(data, prefix: str = "") -> List[str]:
    names = []
    for key, value in (data or {}).items():
        if isinstance(value, dict):
            names += _flatten_yaml(value, f"{prefix}{key}.")
        else:
            names.append(f"{prefix}{key}")
    return names


def _node_sections(document: dict, node_name: str) -> List[dict]:
    """The ``ros__parameters`` mappings of a params file that apply to ``node_name``."""
    sections = []
    for key, value in (document or {}).items():
        name = str(key).lstrip("/")
        if name in ("**", node_name) or name.endswith("/" + node_name) or name.endswith("*/" + node_name):
            if isinstance(value, dict) and isinstance(value.get("ros__parameters"), dict):
                sections.append(value["ros__parameters"])
    return sections


def _params_file_loader():
    """yaml.SafeLoader that also reads ``!!python/tuple`` sequences (as lists): launch_ros turns a node's
    list parameters into tuples and writes its temporary params file with yaml.dump, and rcl's parser
    ignores the tag."""
    import yaml

    class ParamsFileLoader(yaml.SafeLoader):
        pass

    ParamsFileLoader.add_constructor("tag:yaml.org,2002:python/tuple",
                                     lambda loader, node: loader.construct_sequence(node))
    return ParamsFileLoader


def unknown_parameter_names(argv: Sequence[str], node_name: str = "smplify3d_node") -> List[str]:
    """Parameter names that ``--ros-args`` in ``argv`` (``-p NAME:=VALUE``, ``--params-file FILE``)
    give this node but that it does not declare: a misspelt key would otherwise be ignored silently.

    A remap of the node's name (``-r __node:=NAME``) is followed; ``qos_overrides.*`` and the standard
    parameters (:data:`STANDARD_PARAMETERS`) are accepted. Raises ConfigError for an unreadable file.
    """
    import yaml

    loader = _params_file_loader()
    known = {spec.name for spec in parameter_specs()} | set(STANDARD_PARAMETERS)
    given: List[str] = []
    files: List[str] = []
    in_ros_args, i = False, 0
    args = list(argv)
    while i < len(args):
        arg = args[i]
        if arg == "--ros-args":
            in_ros_args = True
        elif arg == "--":
            in_ros_args = False
        elif in_ros_args and arg in ("-p", "--param") and i + 1 < len(args):
            i += 1
            given.append(args[i])
        elif in_ros_args and arg in ("-r", "--remap") and i + 1 < len(args):
            i += 1
            if args[i].startswith(("__node:=", "__name:=")):
                node_name = args[i].split(":=", 1)[1]
        elif in_ros_args and arg == "--params-file" and i + 1 < len(args):
            i += 1
            files.append(args[i])
        i += 1
    names = []
    for item in given:
        target, _, _ = item.partition(":=")
        owner, sep, name = target.rpartition(":")
        if not sep or owner.lstrip("/") in (node_name, "**") or owner.endswith("/" + node_name):
            names.append(name if sep else target)
    for path in files:
        try:
            document = yaml.load(open(path, encoding="utf-8").read(), Loader=loader)
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"--params-file {path}: cannot read it ({error})") from error
        for section in _node_sections(document, node_name):
            names += _flatten_yaml(section)
    return sorted({n for n in names if n not in known and not n.startswith("qos_overrides.")})
