"""Track ids stay with the person who moves a little, and new persons get new ids."""
import numpy as np

from smplify3d_core.tracking import PelvisTracker


def test_ids_follow_small_motion_and_new_people_get_new_ids():
    tracker = PelvisTracker(max_distance=0.5, max_missed=1)
    first = tracker.update(np.array([[0.0, 0, 5], [2.0, 0, 7]]))
    assert first == [0, 1]
    # order swapped, small motion, a newcomer far away
    second = tracker.update(np.array([[2.1, 0, 7.1], [9.0, 0, 9], [0.1, 0, 5.05]]))
    assert second == [1, 2, 0]
    # person 1 leaves for two frames: its id expires (max_missed 1) and is not reused
    tracker.update(np.array([[0.1, 0, 5.0]]))
    tracker.update(np.array([[0.1, 0, 5.0]]))
    assert tracker.update(np.array([[2.1, 0, 7.1], [0.1, 0, 5.0]])) == [3, 0]


def test_a_jump_beyond_the_gate_is_a_new_track():
    tracker = PelvisTracker(max_distance=0.3)
    assert tracker.update(np.array([[0.0, 0, 5]])) == [0]
    assert tracker.update(np.array([[1.0, 0, 5]])) == [1]
