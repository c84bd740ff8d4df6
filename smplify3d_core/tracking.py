"""Frame-to-frame identities for fitted persons (greedy nearest-pelvis association).

Enough for stable marker colours and track ids in a ROS stream; not a multi-object tracker.
"""
from __future__ import annotations

import numpy as np


class PelvisTracker:
    """Assigns track ids by matching pelvis positions to the previous frame's.

    max_distance: metres a pelvis may move between frames and keep its id;
    max_missed: frames a track survives without a match.
    """

    def __init__(self, max_distance: float = 0.6, max_missed: int = 5) -> None:
        self.max_distance = float(max_distance)
        self.max_missed = int(max_missed)
        self._tracks: dict[int, tuple[np.ndarray, int]] = {}  # id -> (pelvis, frames missed)
        self._next_id = 0

    def update(self, pelvises: np.ndarray) -> list[int]:
        """(P, 3) pelvis positions (metres, one frame) -> P track ids (new ids for new persons).

        A non-finite row (a person that could not be fitted) gets a new id and starts no track.
        """
        pelvises = np.asarray(pelvises, dtype=np.float64).reshape(-1, 3)
        ids = [-1] * len(pelvises)
        candidates = sorted(
            (float(np.linalg.norm(p - pelvis)), i, track)
            for i, p in enumerate(pelvises) if np.all(np.isfinite(p))
            for track, (pelvis, _) in self._tracks.items()
        )
        used_tracks = set()
        for distance, i, track in candidates:
            if distance > self.max_distance:
                break
            if ids[i] == -1 and track not in used_tracks:
                ids[i] = track
                used_tracks.add(track)
        for i in range(len(ids)):
            if ids[i] == -1:
                ids[i] = self._next_id
                self._next_id += 1
        updated = {track: (pelvis, missed + 1) for track, (pelvis, missed) in self._tracks.items()
                   if track not in ids and missed + 1 <= self.max_missed}
        updated.update({track: (pelvises[i], 0) for i, track in enumerate(ids) if np.all(np.isfinite(pelvises[i]))})
        self._tracks = updated
        return ids
