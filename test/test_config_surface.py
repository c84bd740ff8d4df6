"""One config surface: typed settings, the documented YAML files, node parameters and CLI names agree."""
import argparse

import pytest
import yaml

from smplify3d_core.fit.config import config_dir
from smplify3d_core.pipeline_config import (PipelineConfig, add_pipeline_arguments, pipeline_config_from_args,
                                            ros_parameters_section)
from smplify3d_core.typed_config import ConfigError, flat_values, flatten_fields
from smplify3d_ros.params import NodeConfig, parameter_descriptor, parameter_specs


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _normalised(value):
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else value


def test_robot_yaml_lists_every_node_parameter_with_its_default():
    data = _flat(ros_parameters_section(yaml.safe_load((config_dir() / "robot.yaml").read_text())))
    specs = {spec.name: spec for spec in parameter_specs()}
    assert set(data) == set(specs)
    for name, value in data.items():
        assert _normalised(value) == _normalised(specs[name].default), name


def test_config_files_and_readme_table_are_generated_from_the_declarations():
    """config/robot.yaml, config/pipeline.yaml and the README's parameter table hold exactly what the
    settings declare (default, range, description); `python -m smplify3d_ros.config_files` rewrites them."""
    from smplify3d_ros.config_files import parameter_table_markdown, stale_files

    assert stale_files() == [], "stale generated files: run python -m smplify3d_ros.config_files"
    table = parameter_table_markdown()
    for spec in NodeConfig.__dataclass_fields__:
        assert f"| `{spec}` |" in table
    assert "| `max_persons` | `8` | 1 … 64 |" in table


def test_pipeline_yaml_is_the_default_pipeline_config():
    assert PipelineConfig.from_yaml(config_dir() / "pipeline.yaml") == PipelineConfig()
    robot = PipelineConfig.from_dict({k: v for k, v in ros_parameters_section(
        yaml.safe_load((config_dir() / "robot.yaml").read_text())).items()
        if k not in {s.name for s in flatten_fields(NodeConfig)}})
    assert robot == PipelineConfig()


@pytest.mark.parametrize("data, needle", [
    ({"max_personz": 3}, "unknown keys ['max_personz']"),
    ({"proposals": {"cluster_distanse": 0.3}}, "under 'proposals'"),
    ({"max_persons": 0}, "max_persons = 0 is invalid"),
    ({"max_persons": "eight"}, "not a number"),
    ({"gender": "robot"}, "one of neutral, male, female"),
    ({"proposals": {"lidar_up": [0, 1]}}, "needs 3 numbers"),
])
def test_bad_settings_name_the_key_and_what_is_allowed(data, needle):
    with pytest.raises(ConfigError, match=None) as error:
        PipelineConfig.from_dict(data)
    assert needle in str(error.value)


def test_every_setting_is_documented_and_described_for_ros():
    names = [spec.name for spec in parameter_specs()]
    assert len(names) == len(set(names)), "a parameter name is used twice"
    for spec in parameter_specs():
        descriptor = parameter_descriptor(spec)
        assert descriptor.description == spec.doc and len(spec.doc) > 10
        if spec.kind == "int" and spec.min is not None:
            assert descriptor.integer_range[0].from_value == spec.min
        if spec.kind == "float" and spec.max is not None:
            assert descriptor.floating_point_range[0].to_value == pytest.approx(spec.max)


def test_one_name_per_setting_on_the_command_line(tmp_path):
    parser = argparse.ArgumentParser()
    add_pipeline_arguments(parser)
    params = tmp_path / "p.yaml"
    params.write_text("max_persons: 4\nproposals: {cluster_distance: 0.2}\n")
    args = parser.parse_args(["--params", str(params), "--max-persons", "3", "--no-flip-test",
                              "--set", "tracker.shape_frames=7", "--vitpose-checkpoint", "v.pth"])
    config = pipeline_config_from_args(args)
    values = flat_values(config)
    assert values["max_persons"] == 3 and values["proposals.cluster_distance"] == 0.2
    assert values["flip_test"] is False and values["tracker.shape_frames"] == 7 and values["vitpose_checkpoint"] == "v.pth"
    with pytest.raises(ConfigError, match="unknown settings"):
        pipeline_config_from_args(parser.parse_args(["--set", "max_personz=3"]))


def test_the_core_imports_no_ros_and_the_runtime_path_no_simulator():
    import subprocess
    import sys

    code = ("import sys, smplify3d_core.pipeline, smplify3d_core.models, smplify3d_core.observe; "
            "bad = sorted(m for m in sys.modules if m.startswith(('rclpy', 'ament_index_python', "
            "'smplify3d_core.sim', 'smplify3d_ros'))); print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_params_file_written_by_launch_ros_is_read(tmp_path):
    """launch_ros gives a node's parameters to it in a temporary file written with yaml.dump, list
    values as tuples (!!python/tuple); the node's check for misspelt names must read that file."""
    from smplify3d_ros.params import unknown_parameter_names

    path = tmp_path / "launch_params_x"
    path.write_text(yaml.dump({"/**": {"ros__parameters": {"T_cam_lidar": tuple(float(v) for v in range(16)),
                                                           "device": "cpu", "max_personz": 3}}},
                              default_flow_style=False))
    assert "!!python/tuple" in path.read_text()
    assert unknown_parameter_names(["node", "--ros-args", "--params-file", str(path)]) == ["max_personz"]


def _fit_keys(cls, prefix: str = "") -> set:
    import dataclasses

    keys = set()
    for item in dataclasses.fields(cls):
        default = item.default_factory() if item.default_factory is not dataclasses.MISSING else None
        keys |= _fit_keys(type(default), f"{prefix}{item.name}.") if dataclasses.is_dataclass(default) \
            else {prefix + item.name}
    return keys


@pytest.mark.parametrize("preset", ["demo", "humanm3", "sloper4d", "facing"])
def test_every_fit_preset_spells_out_every_fit_key(preset):
    """The presets are the fit's documentation: each lists (and comments) every key FitConfig has."""
    from smplify3d_core.fit.config import FitConfig

    data = yaml.safe_load((config_dir() / f"{preset}.yaml").read_text())
    assert set(_flat(data)) == _fit_keys(FitConfig)
    FitConfig.preset(preset)


@pytest.mark.parametrize("data, needle", [
    ({"stage2": {"iterationz": 3}}, "unknown keys ['iterationz'] under 'stage2'"),
    ({"visible_surface_refresh_steps": 0}, "visible_surface_refresh_steps must be at least 1"),
    ({"tracking": {"surface_vertices": 0}}, "tracking.surface_vertices must be at least 1"),
    ({"nearest_neighbours": "octree"}, "nearest_neighbours must be auto, kdtree or brute"),
])
def test_bad_fit_settings_name_the_key(data, needle):
    from smplify3d_core.fit.config import FitConfig

    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        FitConfig.from_dict(data, source="test.yaml")
