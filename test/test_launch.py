"""The launch files, the RViz config and their install rules.

Two kinds of tests:

* Static checks that always run (no ROS launch system needed): every launch file compiles and
  defines ``generate_launch_description``; its arguments, executables and node parameter names
  exist (setup.cfg console scripts, scripts/ros/ launchers, the node's parameter specs (smplify3d_ros/params.py), sim_node.py's
  parameters); each launch file is also *executed* against small stand-ins of the ``launch`` /
  ``launch_ros`` classes that record what they are given, so typos, wrong parameter types and
  the demo's launch-time extrinsic are caught here; the RViz config parses as YAML with the
  expected frame and topics; CMakeLists.txt installs launch/, rviz/ and the executables.
* A launch_testing test that launches demo.launch.py (without RViz) and waits for a SMPLArray on
  /smplify3d_node/smpl. launch, launch_ros and launch_testing ship with a ROS 2 distro and are not
  on PyPI, so it skips where launch_testing is not installed, and also where the package is not
  built and installed in a sourced ROS workspace (`colcon build`, then `source install/setup.bash`).
  launch_testing's pytest plugin (2024 sources) needs pytest < 8.4.
"""
import ast
import configparser
import re
import stat
import sys
import time
import types
import unittest
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_DIR = ROOT / "launch"
LAUNCH_FILES = ("robot.launch.py", "replay.launch.py", "demo.launch.py")
RVIZ_FILE = ROOT / "rviz" / "smplify3d.rviz"
PACKAGE = "smplify3d_ros"
EXECUTABLES = ("smplify3d_node", "smplify3d_sim_node", "smplify3d-bag")
STANDARD_NODE_PARAMETERS = {"use_sim_time"}  # declared by rclpy for every node

EXPECTED_ARGUMENTS = {  # argument -> default (None: required)
    "robot.launch.py": {"params_file": "robot.yaml", "rviz": "false", "use_sim_time": "false", "autostart": "true"},
    "replay.launch.py": {"bag": None, "rate": "1.0", "params_file": "robot.yaml", "rviz": "false"},
    "demo.launch.py": {"rviz": "true", "autostart": "true"},
}


# --------------------------------------------------------------------------------------------
# sources read without importing them (node.py needs rclpy and the generated messages)
# --------------------------------------------------------------------------------------------
def _module_dict_literal(path: Path, name: str) -> dict:
    """The literal dict assigned to ``name`` anywhere in ``path`` (module level or in a function)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"no literal {name} = {{...}} in {path}")


def _node_parameters() -> dict:
    from smplify3d_ros.params import parameter_specs

    return {spec.name: list(spec.default) if isinstance(spec.default, tuple) else spec.default for spec in parameter_specs()}


def _sim_parameters() -> dict:
    return _module_dict_literal(ROOT / "smplify3d_ros" / "sim_node.py", "defaults")


def _parameters_of(executable: str) -> dict:
    return {"smplify3d_node": _node_parameters(), "smplify3d_sim_node": _sim_parameters(), "rviz2": {}}[executable]


def _console_scripts() -> dict:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    entries = {}
    for line in config["options.entry_points"]["console_scripts"].strip().splitlines():
        name, target = (part.strip() for part in line.split("=", 1))
        entries[name] = target
    return entries


def _launch_tree(name: str) -> ast.Module:
    path = LAUNCH_DIR / name
    return ast.parse(path.read_text(), filename=str(path))


def _calls(tree: ast.AST, function: str):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if called == function:
                yield node


def _keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _literal(tree: ast.Module, node: ast.expr):
    """A literal, or a module-level constant such as PACKAGE = "smplify3d_ros"."""
    if isinstance(node, ast.Name):
        for statement in tree.body:
            if isinstance(statement, ast.Assign) and any(getattr(t, "id", None) == node.id for t in statement.targets):
                return ast.literal_eval(statement.value)
    return ast.literal_eval(node)


def _declared_arguments(tree: ast.Module) -> dict:
    declared = {}
    for call in _calls(tree, "DeclareLaunchArgument"):
        name = ast.literal_eval(call.args[0])
        default = _keyword(call, "default_value")
        declared[name] = default
    return declared


# --------------------------------------------------------------------------------------------
# (a) static checks
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_file_compiles_and_defines_generate_launch_description(name):
    path = LAUNCH_DIR / name
    source = path.read_text()
    compile(source, str(path), "exec")
    tree = ast.parse(source)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions, f"{name} defines no generate_launch_description()"
    assert not functions["generate_launch_description"].args.args, "generate_launch_description takes no arguments"
    assert ast.get_docstring(tree), f"{name} has no usage docstring"


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_arguments_are_declared_with_their_defaults(name):
    tree = _launch_tree(name)
    declared = _declared_arguments(tree)
    for argument, default in EXPECTED_ARGUMENTS[name].items():
        assert argument in declared, f"{name} does not declare {argument!r}"
        value = declared[argument]
        if default is None:
            assert value is None, f"{argument!r} must be required (no default_value) in {name}"
        elif default.endswith(".yaml"):
            assert default in ast.unparse(value), f"{argument!r} in {name} should default to config/{default}"
        else:
            assert ast.literal_eval(value) == default, f"{argument!r} in {name}: default {ast.unparse(value)}"
    # every LaunchConfiguration("x") refers to an argument the file declares
    used = {ast.literal_eval(c.args[0]) for c in _calls(tree, "LaunchConfiguration")}
    assert used <= set(declared), f"{name} uses undeclared launch arguments {sorted(used - set(declared))}"


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launched_executables_exist(name):
    tree = _launch_tree(name)
    scripts = _console_scripts()
    found = []
    for call in list(_calls(tree, "Node")) + list(_calls(tree, "ExecutableInPackage")):
        package = _literal(tree, _keyword(call, "package"))
        executable = _literal(tree, _keyword(call, "executable"))
        found.append(executable)
        if package == "rviz2":
            assert executable == "rviz2"
            continue
        assert package == PACKAGE
        assert executable in EXECUTABLES, f"{name} runs {executable!r}, which the package does not install"
        assert executable in scripts, f"{executable!r} is not a console script in setup.cfg"
    includes_robot_launch = "robot.launch.py" in {c.value for c in ast.walk(tree) if isinstance(c, ast.Constant)}
    assert "smplify3d_node" in found or includes_robot_launch, f"{name} does not start smplify3d_node"


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_node_parameter_names_exist(name):
    """Every literal parameter a launch file gives a node is one that node declares."""
    tree = _launch_tree(name)
    checked = 0
    for call in _calls(tree, "Node"):
        executable = _literal(tree, _keyword(call, "executable"))
        known = set(_parameters_of(executable)) | STANDARD_NODE_PARAMETERS
        parameters = _keyword(call, "parameters")
        for entry in getattr(parameters, "elts", []):
            if isinstance(entry, ast.Dict):
                for key in entry.keys:
                    assert key is not None, f"{name}: no **-expansion in node parameters (keep them checkable)"
                    key = ast.literal_eval(key)
                    assert key in known, f"{name}: {executable} has no parameter {key!r}"
                    checked += 1
    if list(_calls(tree, "Node")):
        assert checked, f"{name} gives its nodes no literal parameters to check"


def test_launcher_scripts_call_the_console_script_entry_points():
    scripts = _console_scripts()
    for executable in EXECUTABLES:
        path = ROOT / "scripts" / "ros" / executable
        assert path.is_file(), f"missing launcher {path}"
        assert path.stat().st_mode & stat.S_IXUSR, f"{path} is not executable"
        source = path.read_text()
        assert source.startswith("#!/usr/bin/env python3\n")
        module, function = scripts[executable].split(":")
        imports = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)]
        assert any(n.module == module and any(a.name == function for a in n.names) for n in imports), \
            f"{path} does not call {scripts[executable]} (setup.cfg)"
        module_path = ROOT / Path(*module.split("."))
        assert module_path.with_suffix(".py").is_file() or (module_path / "__init__.py").is_file(), \
            f"{module} (entry point of {executable}) does not exist"


def test_cmake_installs_launch_rviz_and_the_executables():
    text = (ROOT / "CMakeLists.txt").read_text()
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())  # drop comments
    block_start = text.index("if(SMPLIFY3D_INSTALL_PYTHON_SOURCES)")
    block_end = text.index("endif()", text.index("install(PROGRAMS"))
    loop = re.search(r"foreach\(_dir ([^)]*)\)(.*?)endforeach\(\)", text, re.S)
    assert loop and {"config", "launch", "rviz"} <= set(loop.group(1).split())
    assert "install(DIRECTORY ${_dir} DESTINATION share/${PROJECT_NAME})" in loop.group(2)
    programs = re.search(r"install\(PROGRAMS(.*?)DESTINATION lib/\$\{PROJECT_NAME\}\)", text, re.S)
    assert programs, "no install(PROGRAMS ... DESTINATION lib/${PROJECT_NAME})"
    assert set(programs.group(1).split()) == {f"scripts/ros/{e}" for e in EXECUTABLES}
    # Inside the SMPLIFY3D_INSTALL_PYTHON_SOURCES block: scripts/build_msgs.sh configures a tree
    # that only holds CMakeLists.txt, package.xml and msg/ with the option OFF.
    assert block_start < loop.start() < programs.start() < block_end
    assert (ROOT / "launch").is_dir() and (ROOT / "rviz").is_dir()


def test_rviz_config_parses_and_shows_the_expected_topics():
    config = yaml.safe_load(RVIZ_FILE.read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "camera_optical"
    assert manager["Global Options"]["Fixed Frame"] == _sim_parameters()["camera_frame"]
    assert {p["Class"] for p in config["Panels"]} >= {"rviz_common/Displays", "rviz_common/Views"}
    displays = {d["Class"]: d for d in manager["Displays"]}
    expected = {
        "rviz_default_plugins/MarkerArray": "/smplify3d_node/markers",
        "rviz_default_plugins/PointCloud2": "/smplify3d_sim_node/points",
        "rviz_default_plugins/Image": "/smplify3d_node/overlay",
    }
    for plugin, topic in expected.items():
        assert plugin in displays, f"no {plugin} display"
        display = displays[plugin]
        assert display["Enabled"] is True and display["Name"]
        assert display["Topic"]["Value"] == topic
        assert display["Topic"]["Reliability Policy"] in ("Reliable", "Best Effort")
        assert display["Topic"]["Durability Policy"] in ("Volatile", "Transient Local")
    assert "rviz_default_plugins/TF" in displays  # the cloud is placed with TF (lidar frame)
    assert manager["Views"]["Current"]["Class"].startswith("rviz_default_plugins/")
    assert manager["Views"]["Current"]["Target Frame"] == _sim_parameters()["lidar_frame"]


# --------------------------------------------------------------------------------------------
# (a) the launch files executed against recording stand-ins of launch / launch_ros
# --------------------------------------------------------------------------------------------
class _Recorded:
    """Stands in for any launch / launch_ros class: keeps its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __repr__(self):
        return f"{type(self).__name__}({self.args!r}, {self.kwargs!r})"


class _LaunchConfiguration(_Recorded):
    def perform(self, context):
        return context.launch_configurations[self.args[0]]


def _stub_module(name, **classes):
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so that submodules import
    for key, value in classes.items():
        setattr(module, key, value)
    module.__getattr__ = lambda attr: classes.setdefault(attr, type(attr, (_Recorded,), {}))
    return module


@pytest.fixture
def stub_launch(monkeypatch):
    """Replaces launch, launch_ros and ament_index_python with recorders; the share dir is the checkout."""
    for name in ("launch", "launch.actions", "launch.conditions", "launch.event_handlers", "launch.events",
                 "launch.launch_description_sources", "launch_ros", "launch_ros.actions",
                 "launch_ros.parameter_descriptions", "launch_ros.substitutions", "ament_index_python"):
        monkeypatch.setitem(sys.modules, name, _stub_module(name))
    monkeypatch.setitem(sys.modules, "launch.substitutions",
                        _stub_module("launch.substitutions", LaunchConfiguration=_LaunchConfiguration))

    def get_package_share_directory(package):
        assert package == PACKAGE
        return str(ROOT)  # the checkout has the share/smplify3d_ros layout: config/, launch/, rviz/

    monkeypatch.setitem(sys.modules, "ament_index_python.packages", _stub_module(
        "ament_index_python.packages", get_package_share_directory=get_package_share_directory))


def _run_launch_file(name):
    path = LAUNCH_DIR / name
    # exec, not an import: no __pycache__ in launch/ (CMake installs that folder as it is)
    module = types.ModuleType("launch_file_" + name.replace(".", "_"))
    module.__file__ = str(path)
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    description = module.generate_launch_description()
    assert type(description).__name__ == "LaunchDescription"
    return description


def _entities(value):
    """Every recorded entity reachable from ``value``."""
    if isinstance(value, _Recorded):
        yield value
        for item in list(value.args) + list(value.kwargs.values()):
            yield from _entities(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _entities(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _entities(item)
    elif type(value).__name__ in ("dict_items",):
        for item in value:
            yield from _entities(item)


def _of_type(description, type_name):
    found = {id(e): e for e in _entities(description) if type(e).__name__ == type_name}
    return list(found.values())


def _defaults(description):
    return {a.args[0]: a.kwargs.get("default_value") for a in _of_type(description, "DeclareLaunchArgument")}


def _is_configuration(value, name):
    return isinstance(value, _LaunchConfiguration) and value.args == (name,)


def _check_parameter_types(executable, parameters):
    """Literal values must have the declared parameter's type (rclpy rejects others at start-up)."""
    declared = {**_parameters_of(executable), "use_sim_time": False}
    for key, value in parameters.items():
        assert key in declared, f"{executable} has no parameter {key!r}"
        if isinstance(value, _Recorded):  # a substitution or ParameterValue, resolved by launch_ros
            continue
        default = declared[key]
        assert type(value) is type(default), f"{executable}.{key}: {value!r} is not a {type(default).__name__}"
        if isinstance(default, list):
            assert len(value) == len(default) and all(type(v) is type(default[0]) for v in value)


def _check_rviz_node(description):
    (rviz,) = [n for n in _of_type(description, "Node") if n.kwargs["package"] == "rviz2"]
    assert rviz.kwargs["executable"] == "rviz2"
    assert rviz.kwargs["arguments"][0] == "-d" and _is_configuration(rviz.kwargs["arguments"][1], "rviz_config")
    assert _is_configuration(rviz.kwargs["condition"].args[0], "rviz")
    assert Path(_defaults(description)["rviz_config"]) == RVIZ_FILE


def test_robot_launch_description(stub_launch):
    description = _run_launch_file("robot.launch.py")
    defaults = _defaults(description)
    assert Path(defaults["params_file"]) == ROOT / "config" / "robot.yaml"
    (node,) = [n for n in _of_type(description, "Node") if n.kwargs["executable"] == "smplify3d_node"]
    assert node.kwargs["package"] == PACKAGE and node.kwargs["name"] == "smplify3d_node"
    params_file, overrides = node.kwargs["parameters"]
    assert _is_configuration(params_file, "params_file")
    sim_time = overrides["use_sim_time"]
    assert _is_configuration(sim_time.args[0], "use_sim_time") and sim_time.kwargs["value_type"] is bool
    autostart = overrides["autostart"]
    assert _is_configuration(autostart.args[0], "autostart") and autostart.kwargs["value_type"] is bool
    _check_parameter_types("smplify3d_node", overrides)
    _check_rviz_node(description)


def test_replay_launch_description(stub_launch):
    description = _run_launch_file("replay.launch.py")
    (player,) = _of_type(description, "ExecuteProcess")
    executable, play, bag, rate_flag, rate = player.kwargs["cmd"]
    assert type(executable).__name__ == "ExecutableInPackage"
    assert executable.kwargs == {"executable": "smplify3d-bag", "package": PACKAGE}
    assert (play, rate_flag) == ("play", "--rate")
    assert _is_configuration(bag, "bag") and _is_configuration(rate, "rate")
    assert _defaults(description)["use_sim_time"] == "true"  # the node runs on the bag's time
    (include,) = _of_type(description, "IncludeLaunchDescription")
    robot_launch = Path(include.args[0].args[0])
    assert robot_launch == LAUNCH_DIR / "robot.launch.py"
    passed = dict(include.kwargs["launch_arguments"])
    assert _is_configuration(passed["use_sim_time"], "use_sim_time")
    assert set(passed) <= set(_declared_arguments(_launch_tree("robot.launch.py")))
    (timer,) = _of_type(description, "TimerAction")
    assert timer.kwargs["actions"] == [player]


def test_demo_launch_description_resolves_the_preset_extrinsic(stub_launch):
    from smplify3d_core.sim.presets import get_preset

    description = _run_launch_file("demo.launch.py")
    defaults = _defaults(description)
    (opaque,) = _of_type(description, "OpaqueFunction")
    context = types.SimpleNamespace(launch_configurations=dict(defaults))
    nodes = {n.kwargs["executable"]: n for n in opaque.kwargs["function"](context)}
    assert set(nodes) == {"smplify3d_sim_node", "smplify3d_node"}

    (sim_parameters,) = nodes["smplify3d_sim_node"].kwargs["parameters"]
    _check_parameter_types("smplify3d_sim_node", sim_parameters)
    assert sim_parameters["sensor"] == "humanm3"

    params_file, parameters = nodes["smplify3d_node"].kwargs["parameters"]
    assert _is_configuration(params_file, "params_file")
    _check_parameter_types("smplify3d_node", parameters)
    expected_T = get_preset("humanm3").T_cam_lidar.reshape(-1).tolist()
    assert parameters["T_cam_lidar"] == pytest.approx(expected_T, abs=0)
    assert parameters["extrinsics_source"] == "static" and parameters["reliable_inputs"] is True
    sim = "/" + nodes["smplify3d_sim_node"].kwargs["name"]
    assert parameters["observations_topic"] == f"{sim}/observations"
    assert parameters["image_topic"] == f"{sim}/image" and parameters["camera_info_topic"] == f"{sim}/camera_info"
    assert parameters["cloud_topic"] == f"{sim}/points"
    assert parameters["publish_overlay"] is True  # the RViz config shows ~/overlay

    context.launch_configurations.update(preset="sloper4d", overlay="false", rate="2.5")
    nodes = {n.kwargs["executable"]: n for n in opaque.kwargs["function"](context)}
    parameters = nodes["smplify3d_node"].kwargs["parameters"][1]
    assert parameters["T_cam_lidar"] == get_preset("sloper4d").T_cam_lidar.reshape(-1).tolist()
    assert parameters["publish_overlay"] is False
    assert nodes["smplify3d_sim_node"].kwargs["parameters"][0]["rate"] == 2.5
    _check_rviz_node(description)


# --------------------------------------------------------------------------------------------
# (b) launch_testing: demo.launch.py end to end (needs a ROS 2 install)
# --------------------------------------------------------------------------------------------
SMPL_TOPIC = "/smplify3d_node/smpl"
SMPL_TIMEOUT_S = 180.0  # node start-up (model build on first use) + the first fits on a CPU


class DemoPublishesBodies(unittest.TestCase):
    """Active test: runs while the demo's processes are up. With ``MANAGED`` (the demo launched with
    autostart:=false) it first drives the node through configure and activate, as ``ros2 lifecycle
    set`` does, and checks that nothing was published before."""

    __test__ = False  # run by launch_testing's runner, not collected by pytest itself
    MANAGED = False

    def _drive_lifecycle(self, node, executor, received):
        from lifecycle_msgs.msg import State, Transition
        from lifecycle_msgs.srv import ChangeState, GetState

        def call(service_type, name, request):
            client = node.create_client(service_type, f"/smplify3d_node/{name}")
            self.assertTrue(client.wait_for_service(timeout_sec=60.0), f"/smplify3d_node/{name} is not offered")
            future = client.call_async(request)
            executor.spin_until_future_complete(future, timeout_sec=120.0)
            self.assertTrue(future.done(), f"no answer from /smplify3d_node/{name}")
            return future.result()

        self.assertEqual(call(GetState, "get_state", GetState.Request()).current_state.id,
                         State.PRIMARY_STATE_UNCONFIGURED)
        for _ in range(20):  # 2 s of the simulator's frames: none may be fitted while unconfigured
            executor.spin_once(timeout_sec=0.1)
        self.assertEqual(received, [])
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            answer = call(ChangeState, "change_state", ChangeState.Request(transition=Transition(id=transition)))
            self.assertTrue(answer.success, f"transition {transition} failed")
        self.assertEqual(call(GetState, "get_state", GetState.Request()).current_state.id, State.PRIMARY_STATE_ACTIVE)

    def test_smpl_arrays_with_persons_arrive(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from smplify3d_ros.msg import SMPLArray

        context = rclpy.Context()
        rclpy.init(context=context)
        try:
            node = rclpy.create_node("smplify3d_launch_test_listener", context=context)
            received = []
            node.create_subscription(SMPLArray, SMPL_TOPIC, received.append, 10)
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(node)
            if self.MANAGED:
                self._drive_lifecycle(node, executor, received)
            deadline = time.monotonic() + SMPL_TIMEOUT_S
            while time.monotonic() < deadline and not any(m.persons for m in received):
                executor.spin_once(timeout_sec=0.2)
            with_persons = [m for m in received if m.persons]
            self.assertTrue(with_persons, f"no SMPLArray with persons on {SMPL_TOPIC} within {SMPL_TIMEOUT_S:.0f} s "
                                          f"({len(received)} empty ones)")
            message = with_persons[0]
            self.assertEqual(message.header.frame_id, "camera_optical")
            self.assertTrue(any(person.valid for person in message.persons))
            self.assertEqual(len(message.persons[0].joints), 24)
            executor.remove_node(node)
            node.destroy_node()
        finally:
            rclpy.try_shutdown(context=context)


class DemoShutsDownCleanly(unittest.TestCase):
    """Post-shutdown test: both nodes end with exit code 0 on launch's SIGINT."""

    __test__ = False  # marked @launch_testing.post_shutdown_test() in _demo_launch_test_module

    def test_exit_codes(self, proc_info):
        import launch_testing.asserts

        launch_testing.asserts.assertExitCodes(proc_info)


def _demo_launch_test_module(demo_launch_file: str, autostart: bool = True) -> types.ModuleType:
    """A launch_testing test module: generate_test_description() plus the two test classes above
    (the active one driving the lifecycle when ``autostart`` is false)."""
    import launch
    import launch_testing
    import launch_testing.actions
    import launch_testing.markers
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    @launch_testing.markers.keep_alive
    def generate_test_description():
        demo = IncludeLaunchDescription(
            PythonLaunchDescriptionSource(demo_launch_file),
            launch_arguments={"rviz": "false", "overlay": "false", "device": "cpu", "rate": "1.0",
                              "persons": "2", "autostart": str(autostart).lower()}.items(),
        )
        return launch.LaunchDescription([demo, launch_testing.actions.ReadyToTest()])

    module = types.ModuleType("smplify3d_demo_launch_test")
    module.generate_test_description = generate_test_description
    module.DemoPublishesBodies = DemoPublishesBodies if autostart else type(
        "ManagedDemoPublishesBodies", (DemoPublishesBodies,), {"MANAGED": True})
    module.DemoShutsDownCleanly = launch_testing.post_shutdown_test()(DemoShutsDownCleanly)
    return module


@pytest.mark.parametrize("autostart", [True, False], ids=["autostart", "managed"])
def test_demo_launch_publishes_smpl_arrays(monkeypatch, autostart):
    pytest.importorskip(
        "launch_testing",
        reason="launch_testing is not installed (it ships with a ROS 2 distro, not on PyPI): "
               "the launch files are tested where ROS 2 is installed")
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (it ships with a ROS 2 distro)")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        share = Path(get_package_share_directory(PACKAGE))
    except PackageNotFoundError:
        pytest.skip(f"{PACKAGE} is not installed in a sourced ROS workspace (colcon build; source install/setup.bash)")
    demo_launch_file = share / "launch" / "demo.launch.py"
    if not demo_launch_file.is_file():
        pytest.skip(f"{demo_launch_file} is not installed (rebuild the workspace)")

    from launch_testing.loader import LoadTestsFromPythonModule
    try:
        from launch_testing_ros import LaunchTestRunner  # the ROS-aware runner `launch_test` uses
    except ImportError:
        from launch_testing.test_runner import LaunchTestRunner

    # Own DDS domain, loopback only: the launched nodes inherit this environment, and so does
    # the listener in DemoPublishesBodies.
    from ros_processes import ros_domain_id

    monkeypatch.setenv("ROS_DOMAIN_ID", str(ros_domain_id(2)))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    module = _demo_launch_test_module(str(demo_launch_file), autostart)
    runner = LaunchTestRunner(test_runs=LoadTestsFromPythonModule(module, name=module.__name__))
    runner.validate()
    results = runner.run()
    failures = [f"{test}: {error}" for result in results.values()
                for test, error in list(getattr(result, "errors", [])) + list(getattr(result, "failures", []))]
    assert all(result.wasSuccessful() for result in results.values()), "\n".join(failures) or str(results)
    assert sum(getattr(result, "testsRun", 0) for result in results.values()) >= 2
