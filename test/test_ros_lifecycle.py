"""smplify3d_node as a managed (lifecycle) node, driven over DDS through its lifecycle services the way
``ros2 lifecycle set`` and nav2's lifecycle manager drive it; the node runs as its own process."""
import signal
import time

import pytest
from ros_processes import (NODE, Listener, LineReader, assert_clean_exit, isolated_ros_env, node_params, sim_params,
                           start_ros_module, stop_process, wait_for)

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

SALT = 45  # ros_domain_id salt of this module (see ros_processes)


def test_autostart_false_waits_for_configure_and_activate(body_model_dir):
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    env = isolated_ros_env(SALT)
    listener = Listener(env)
    sim = start_ros_module("smplify3d_ros.sim_node", sim_params(), env)
    node = start_ros_module("smplify3d_ros.node", node_params(autostart="false"), env)
    reader = LineReader(node)
    try:
        change = listener.node.create_client(ChangeState, f"{NODE}/change_state")
        get = listener.node.create_client(GetState, f"{NODE}/get_state")

        def call(client, request):
            assert client.wait_for_service(timeout_sec=60.0), f"{client.srv_name} not offered"
            future = client.call_async(request)
            wait_for(future.done, 120.0, f"an answer from {client.srv_name}")
            return future.result()

        def state():
            return call(get, GetState.Request()).current_state.id

        def transition(transition_id):
            return call(change, ChangeState.Request(transition=Transition(id=transition_id))).success

        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        wait_for(lambda: listener.statuses and "unconfigured" in listener.statuses[-1][1], 30.0,
                 "diagnostics saying unconfigured")
        time.sleep(3.0)  # the simulator publishes meanwhile: nothing is fitted before activation
        assert listener.results == []
        assert transition(Transition.TRANSITION_CONFIGURE) and state() == State.PRIMARY_STATE_INACTIVE
        assert transition(Transition.TRANSITION_ACTIVATE) and state() == State.PRIMARY_STATE_ACTIVE
        wait_for(lambda: any(r.persons for r in listener.results), 180.0, "a fitted frame once active")
        assert transition(Transition.TRANSITION_DEACTIVATE) and state() == State.PRIMARY_STATE_INACTIVE
        time.sleep(1.0)  # results already on the wire may still arrive
        count = len(listener.results)
        time.sleep(3.0)
        assert len(listener.results) == count, "results published while inactive"
        assert transition(Transition.TRANSITION_CLEANUP) and state() == State.PRIMARY_STATE_UNCONFIGURED
        assert transition(Transition.TRANSITION_CONFIGURE) and transition(Transition.TRANSITION_ACTIVATE)
        wait_for(lambda: len([r for r in listener.results if r.persons]) > count, 180.0, "fitting again")
        node.send_signal(signal.SIGTERM)
        assert_clean_exit(node, reader, "SIGTERM when active after a second activation")
    finally:
        listener.close()
        for process in (node, sim):
            if process.poll() is None:
                stop_process(process)
