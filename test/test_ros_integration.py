"""The nodes as their own processes over real DDS: synthetic sensors in, SMPL bodies out."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from ros_processes import isolated_ros_env, stop_process

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from smplify3d_core.sim.presets import get_preset  # noqa: E402

SIM = "/smplify3d_sim_node"
NODE = "/smplify3d_node"


@pytest.fixture(scope="module")
def ros_env(body_model_dir):
    return isolated_ros_env(0)


def _start(module, params, env):
    args = [sys.executable, "-m", module, "--ros-args"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def running_nodes(ros_env):
    T = get_preset("humanm3").T_cam_lidar.reshape(-1).tolist()
    sim = _start("smplify3d_ros.sim_node", {"rate": 1.0, "persons": 2, "scenes": 2, "seed": 5, "sequence": "false"}, ros_env)
    node = _start("smplify3d_ros.node", {
        "image_topic": f"{SIM}/image", "camera_info_topic": f"{SIM}/camera_info", "cloud_topic": f"{SIM}/points",
        "observations_topic": f"{SIM}/observations", "extrinsics_source": "static", "reliable_inputs": "true",
        "publish_vertices": "true",
        "T_cam_lidar": "[" + ", ".join(f"{v:.9f}" for v in T) + "]", "device": "cpu", "preset": "humanm3",
    }, ros_env)
    yield sim, node
    logs = stop_process(node), stop_process(sim)
    print("node log:\n" + logs[0] + "\nsim log:\n" + logs[1])


def test_node_answers_the_synthetic_stream_with_accurate_bodies(running_nodes, ros_env):
    from smplify3d_ros.msg import SMPLArray
    from visualization_msgs.msg import MarkerArray

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    try:
        listener = rclpy.create_node("integration_listener", context=context)
        results, truths, markers = [], {}, []
        listener.create_subscription(SMPLArray, f"{NODE}/smpl", results.append, 10)
        listener.create_subscription(MarkerArray, f"{NODE}/markers", markers.append, 10)
        listener.create_subscription(
            SMPLArray, f"{SIM}/ground_truth",
            lambda m: truths.__setitem__((m.header.stamp.sec, m.header.stamp.nanosec), m), 10)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(listener)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.2)
            matched = [r for r in results if r.persons and (r.header.stamp.sec, r.header.stamp.nanosec) in truths]
            if len(matched) >= 2 and markers:
                break
            for process in running_nodes:
                assert process.poll() is None, "a node exited early"
        assert len(matched) >= 2, f"{len(results)} results, {len(truths)} truths within 120 s"
        for result in matched:
            truth = truths[(result.header.stamp.sec, result.header.stamp.nanosec)]
            assert len(result.persons) == len(truth.persons) == 2
            assert "stage2" in result.stage_names
            errors, pves = [], []
            for person in result.persons:
                assert person.valid and len(person.joints) == 24 and len(person.vertices) == 6890
                fitted = np.array([[p.x, p.y, p.z] for p in person.joints])
                # the nearest true body (ids of the stand-in detector follow the simulator's)
                best = min(truth.persons,
                           key=lambda t: np.linalg.norm(np.array([t.joints[0].x, t.joints[0].y, t.joints[0].z]) - fitted[0]))
                true = np.array([[p.x, p.y, p.z] for p in best.joints])
                errors.append(np.linalg.norm(fitted - true, axis=1).mean())
                fitted_v = np.array([[p.x, p.y, p.z] for p in person.vertices]) - fitted[0]
                true_v = np.array([[p.x, p.y, p.z] for p in best.vertices]) - true[0]
                pves.append(np.linalg.norm(fitted_v - true_v, axis=1).mean())
            assert np.mean(errors) < 0.15, f"mean absolute joint error {np.mean(errors):.3f} m"
            assert np.mean(pves) < 0.08, f"PVE {np.mean(pves) * 1000:.1f} mm"
        mesh_markers = [m for array in markers for m in array.markers if m.action == m.ADD]
        assert mesh_markers and len(mesh_markers[0].points) == 3 * 13720
    finally:
        listener.destroy_node()
        rclpy.shutdown(context=context)


def test_missing_checkpoints_stop_the_node_with_an_actionable_error(ros_env, tmp_path):
    process = _start("smplify3d_ros.node", {"vitpose_checkpoint": str(tmp_path / "vitpose.pth"),
                                            "cliff_checkpoint": str(tmp_path / "cliff.pt")}, ros_env)
    process.wait(timeout=60)
    log = process.stdout.read()
    assert process.returncode == 1
    assert "vitpose.pth" in log and "mmpose" in log and "vitpose_checkpoint" in log
    process = _start("smplify3d_ros.node", {}, ros_env)
    process.wait(timeout=60)
    log = process.stdout.read()
    assert process.returncode == 1 and "observations_topic" in log


def test_ros2_param_describe_documents_every_parameter(running_nodes, ros_env):
    """The node's parameters carry their descriptions and ranges over the standard parameter services
    (what `ros2 param describe /smplify3d_node NAME` shows); they are read-only once the node runs."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import DescribeParameters, ListParameters, SetParameters

    from smplify3d_ros.params import parameter_specs

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    try:
        client_node = rclpy.create_node("describe_client", context=context)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(client_node)

        def call(service_type, name, request):
            client = client_node.create_client(service_type, f"{NODE}/{name}")
            assert client.wait_for_service(timeout_sec=60.0), f"{NODE}/{name} is not offered"
            future = client.call_async(request)
            executor.spin_until_future_complete(future, timeout_sec=60.0)
            assert future.done(), f"{name} did not answer"
            return future.result()

        listed = call(ListParameters, "list_parameters", ListParameters.Request()).result.names
        assert {spec.name for spec in parameter_specs()} <= set(listed)
        names = ["max_persons", "proposals.cluster_distance", "extrinsics_source"]
        described = {d.name: d for d in call(DescribeParameters, "describe_parameters",
                                             DescribeParameters.Request(names=names)).descriptors}
        assert "nearest persons" in described["max_persons"].description
        assert described["max_persons"].integer_range[0].from_value == 1
        assert described["proposals.cluster_distance"].type == ParameterType.PARAMETER_DOUBLE
        assert "static" in described["extrinsics_source"].additional_constraints
        assert all(described[name].read_only for name in names)
        change = Parameter(name="max_persons", value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=5))
        answer = call(SetParameters, "set_parameters", SetParameters.Request(parameters=[change])).results[0]
        assert not answer.successful and "read-only" in answer.reason
        for process in running_nodes:
            assert process.poll() is None, "a node exited"
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.parametrize("params, needle", [
    ({"max_personz": "3"}, "unknown parameters ['max_personz']"),
    ({"extrinsics_source": "banana"}, "extrinsics_source"),
    ({"max_persons": "0"}, "max_persons"),
    ({"sync_slop": "-1.0"}, "sync_slop"),
    ({"params_file": "proposals: {cluster_distanse: 0.3}"}, "proposals.cluster_distanse"),
    ({"device": "gpu"}, "device 'gpu'"),
    ({"junk_checkpoints": True}, "junk_vitpose.pth"),
])
def test_bad_parameters_stop_the_node_with_one_line_naming_them(ros_env, tmp_path, params, needle):
    """Misspelt keys (on the command line or nested in a params file), values out of range, unknown enum
    values, a device torch does not know and files that are not checkpoints stop the node at start-up
    with exit code 1 and one line naming the parameter or file."""
    if "params_file" in params:
        path = tmp_path / "params.yaml"
        path.write_text("smplify3d_node:\n  ros__parameters:\n    " + params["params_file"] + "\n")
        args = [sys.executable, "-m", "smplify3d_ros.node", "--ros-args", "--params-file", str(path)]
        process = subprocess.Popen(args, env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elif "junk_checkpoints" in params:  # files that exist but are not checkpoints
        (tmp_path / "junk_vitpose.pth").write_bytes(bytes(range(256)) * 8)
        (tmp_path / "junk_cliff.pt").write_bytes(bytes(range(256)) * 8)
        process = _start("smplify3d_ros.node", {"vitpose_checkpoint": str(tmp_path / "junk_vitpose.pth"),
                                                "cliff_checkpoint": str(tmp_path / "junk_cliff.pt")}, ros_env)
    else:
        process = _start("smplify3d_ros.node", {"observations_topic": f"{SIM}/observations", **params}, ros_env)
    process.wait(timeout=120)
    log = process.stdout.read()
    assert process.returncode == 1, log
    fatal = [line for line in log.splitlines() if "cannot start" in line]
    assert len(fatal) == 1 and needle in fatal[0], log
    assert "Traceback" not in log
