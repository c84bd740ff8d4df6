"""Metrics of motion over a sequence: acceleration error, root error and identity switches.

Acceleration error is the video human-mesh-recovery measure: for every person, joint and frame t
whose neighbours t−1 and t+1 were also fitted, the norm of the difference between the predicted
and the true second differences ``(x[t+1] − 2 x[t] + x[t−1])``, averaged. It is computed here on
the 24 SMPL joints in a fixed world frame (``odom`` of the simulator: the robot's own motion is not
part of it), so it measures jitter of the root as well as of the limbs; the unit is the input's
per frame² (mm/frame² for millimetres).

An identity switch (the multi-object-tracking measure, IDSW) is counted when a true person who was
given track id *a* in an earlier frame is given another id *b* in a later one.
"""
from __future__ import annotations

from typing import Dict, Hashable, Iterable, Mapping

import numpy as np


def acceleration_errors(predicted: Mapping[int, np.ndarray], truth: Mapping[int, np.ndarray]) -> np.ndarray:
    """Per-frame acceleration errors of one person.

    predicted, truth: frame index -> (J, 3) joints in one world frame (same unit); only frames in
    both count. Returns (K,) the mean over joints of ‖Δ²pred − Δ²truth‖ for each frame t with
    t−1, t and t+1 all present (empty when there is none).
    """
    frames = sorted(set(predicted) & set(truth))
    present = set(frames)
    errors = []
    for t in frames:
        if t - 1 in present and t + 1 in present:
            a = np.asarray(predicted[t + 1]) - 2.0 * np.asarray(predicted[t]) + np.asarray(predicted[t - 1])
            b = np.asarray(truth[t + 1]) - 2.0 * np.asarray(truth[t]) + np.asarray(truth[t - 1])
            errors.append(float(np.mean(np.linalg.norm(a - b, axis=-1))))
    return np.asarray(errors, dtype=np.float64)


def acceleration_error(predicted: Mapping[Hashable, Mapping[int, np.ndarray]],
                       truth: Mapping[Hashable, Mapping[int, np.ndarray]]) -> float:
    """Mean acceleration error over every person and frame (person -> frame -> (J, 3) joints);
    NaN when no person has three consecutive frames."""
    errors = [acceleration_errors(predicted[p], truth[p]) for p in predicted if p in truth]
    errors = np.concatenate(errors) if errors else np.zeros(0)
    return float(errors.mean()) if len(errors) else float("nan")


def root_error(predicted: Mapping[Hashable, Mapping[int, np.ndarray]],
               truth: Mapping[Hashable, Mapping[int, np.ndarray]]) -> float:
    """Mean distance between the predicted and the true root joint (joint 0: the pelvis of the SMPL
    and HumanM3 layouts) over every person and frame in both (person -> frame -> (J, 3) joints, one
    world frame; the unit is the input's), not aligned: where the person is. NaN when none."""
    errors = [float(np.linalg.norm(np.asarray(joints)[0] - np.asarray(truth[person][frame])[0]))
              for person, frames in predicted.items() if person in truth
              for frame, joints in frames.items() if frame in truth[person]]
    return float(np.mean(errors)) if errors else float("nan")


def identity_switches(assignments: Iterable[Mapping[Hashable, int]]) -> int:
    """Identity switches over a sequence: ``assignments`` holds, per frame in order, true person ->
    the track id it was given. A person's first id is free; each later change of it counts one."""
    last: Dict[Hashable, int] = {}
    switches = 0
    for frame in assignments:
        for person, track_id in frame.items():
            if person in last and last[person] != track_id:
                switches += 1
            last[person] = track_id
    return switches
