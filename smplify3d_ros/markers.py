"""RViz markers for fitted SMPL meshes (visualization_msgs/Marker TRIANGLE_LIST per person).

One marker per tracked person, ``id = track id``, in namespace ``ns``, coloured from a fixed
palette by track id (the same person keeps its colour across frames and runs). Markers of
persons seen before but not now are removed with DELETE markers, so no stale mesh stays in RViz.
Bodies that are not valid (the fit's verdict rejected them) are left out (``invalid="hide"``) or
drawn in translucent grey, :data:`INVALID_COLOR` (``invalid="grey"``); see :func:`markers_for_fit`.

Speed: a TRIANGLE_LIST has 3 points per face (13776 faces -> 41328 ``geometry_msgs/Point`` per
person). The points are built from one numpy gather (``vertices[faces]``) and created without
running ``Point.__init__`` (slot assignment on ``Point.__new__``), about 3x faster than
``Point(x=, y=, z=)``; when the generated class does not have the expected slots the plain
constructor is used. The cyclic garbage collector is paused while the points are created (they
hold no references, so no cycles can form): otherwise the ~165k allocations for 4 persons trigger
repeated collections that scan every live Point and cost more than building them.
"""
from __future__ import annotations

import colorsys
import contextlib
import gc
from typing import Any, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from smplify3d_ros.stamps import to_stamp

__all__ = [
    "DEFAULT_NS",
    "INVALID_COLOR",
    "INVALID_MARKERS",
    "track_color",
    "points_from_array",
    "mesh_marker",
    "markers_for_persons",
    "markers_for_fit",
    "delete_all",
]

DEFAULT_NS = "smplify3d"
#: How bodies that are not valid are drawn: left out, or in :data:`INVALID_COLOR`.
INVALID_MARKERS = ("hide", "grey")
#: RGBA of a body that is not valid when ``invalid="grey"``: mid grey, mostly transparent.
INVALID_COLOR = (0.5, 0.5, 0.5, 0.3)

# Qualitative palette (Tableau 10), then golden-ratio hues for ids beyond it.
_PALETTE = [
    (0.122, 0.467, 0.706), (1.000, 0.498, 0.055), (0.173, 0.627, 0.173),
    (0.839, 0.153, 0.157), (0.580, 0.404, 0.741), (0.549, 0.337, 0.294),
    (0.890, 0.467, 0.761), (0.498, 0.498, 0.498), (0.737, 0.741, 0.133),
    (0.090, 0.745, 0.812),
]


def track_color(track_id: int, alpha: float = 0.85) -> Tuple[float, float, float, float]:
    """Deterministic RGBA for a track id (same id -> same colour, every run)."""
    tid = int(track_id)
    if 0 <= tid < len(_PALETTE):
        r, g, b = _PALETTE[tid]
    else:
        h = (abs(tid) * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.65, 0.95)
    return (float(r), float(g), float(b), float(alpha))


def _has_point_slots() -> bool:
    slots = getattr(Point, "__slots__", ())
    if not {"_x", "_y", "_z"}.issubset(slots):
        return False
    try:
        p = Point.__new__(Point)
        p._x, p._y, p._z = 1.0, 2.0, 3.0
        if "_check_fields" in slots:
            p._check_fields = Point()._check_fields
        return (p.x, p.y, p.z) == (1.0, 2.0, 3.0) and p == Point(x=1.0, y=2.0, z=3.0)
    except Exception:
        return False


_FAST_POINTS = _has_point_slots()
_CHECK_FIELDS_DEFAULT = (Point()._check_fields
                         if _FAST_POINTS and hasattr(Point(), "_check_fields") else None)


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic GC for a burst of acyclic allocations (restored even on error; left
    alone when someone else already disabled it)."""
    was_enabled = gc.isenabled()
    if was_enabled:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def points_from_array(points: np.ndarray) -> List[Point]:
    """List of ``geometry_msgs/Point`` from an (N, 3) array (float64 values)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    xs, ys, zs = pts[:, 0].tolist(), pts[:, 1].tolist(), pts[:, 2].tolist()
    with _gc_paused():
        return _make_points(xs, ys, zs)


def _make_points(xs: List[float], ys: List[float], zs: List[float]) -> List[Point]:
    if not _FAST_POINTS:
        return [Point(x=x, y=y, z=z) for x, y, z in zip(xs, ys, zs)]
    new = Point.__new__
    out: List[Point] = []
    append = out.append
    if _CHECK_FIELDS_DEFAULT is None:
        for x, y, z in zip(xs, ys, zs):
            p = new(Point)
            p._x = x
            p._y = y
            p._z = z
            append(p)
    else:
        cf = _CHECK_FIELDS_DEFAULT
        for x, y, z in zip(xs, ys, zs):
            p = new(Point)
            p._x = x
            p._y = y
            p._z = z
            p._check_fields = cf
            append(p)
    return out


def mesh_marker(vertices: np.ndarray, faces: np.ndarray, frame_id: str, stamp: Any,
                marker_id: int, color: Sequence[float] = (0.8, 0.8, 0.8, 1.0),
                ns: str = DEFAULT_NS) -> Marker:
    """TRIANGLE_LIST marker of one mesh.

    Args:
        vertices: (V, 3) metres, in ``frame_id`` (the camera optical frame).
        faces: (F, 3) vertex indices.
        color: RGBA in [0, 1] (alpha 1 is opaque).
    Returns:
        Marker with ``3 * F`` points (face by face), scale 1, identity pose.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3), got {f.shape}")
    m = Marker()
    m.header.frame_id = str(frame_id)
    m.header.stamp = to_stamp(stamp)
    m.ns = ns
    m.id = int(marker_id)
    m.type = Marker.TRIANGLE_LIST
    m.action = Marker.ADD
    m.pose.orientation.w = 1.0
    m.scale.x = m.scale.y = m.scale.z = 1.0
    r, g, b, a = (float(c) for c in color)
    m.color = ColorRGBA(r=r, g=g, b=b, a=a)
    m.frame_locked = False
    m.points = points_from_array(v[f.reshape(-1)])
    return m


def _delete_marker(header: Header, marker_id: int, ns: str) -> Marker:
    m = Marker()
    m.header = header
    m.ns = ns
    m.id = int(marker_id)
    m.action = Marker.DELETE
    m.pose.orientation.w = 1.0
    return m


def markers_for_persons(vertices_list: Sequence[np.ndarray], faces: np.ndarray,
                        track_ids: Optional[Sequence[int]], header: Header,
                        previous_ids: Optional[Iterable[int]] = None,
                        ns: str = DEFAULT_NS, alpha: float = 0.85,
                        colors: Optional[Sequence[Optional[Sequence[float]]]] = None,
                        ) -> Tuple[MarkerArray, Set[int]]:
    """Markers for this frame's persons plus DELETEs for those that disappeared.

    Args:
        vertices_list: per person (V, 3) metres (or a (B, V, 3) array), in ``header.frame_id``.
        faces: (F, 3) shared face indices.
        track_ids: per person id (marker id and colour); None -> 0..B-1.
        header: frame_id + stamp of the markers (the image's header).
        previous_ids: ids published in the previous call (the returned set of that call).
        colors: per person an RGBA that replaces the track colour, or None to keep it.
    Returns:
        (MarkerArray, ids published now). Pass the ids back as ``previous_ids`` next frame.
    """
    n = len(vertices_list)
    ids = list(range(n)) if track_ids is None else [int(t) for t in track_ids]
    if len(ids) != n:
        raise ValueError(f"{n} meshes but {len(ids)} track ids")
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate track ids {ids}: marker ids must be unique")
    colors = [None] * n if colors is None else list(colors)
    if len(colors) != n:
        raise ValueError(f"{n} meshes but {len(colors)} colours")
    faces = np.asarray(faces)
    out = MarkerArray()
    markers = []
    with _gc_paused():  # one pause for all persons (see the module docstring)
        for verts, tid, color in zip(vertices_list, ids, colors):
            markers.append(mesh_marker(verts, faces, header.frame_id, header.stamp, tid,
                                       track_color(tid, alpha) if color is None else color, ns))
    now = set(ids)
    for tid in sorted(set(int(i) for i in (previous_ids or ())) - now):
        markers.append(_delete_marker(header, tid, ns))
    out.markers = markers
    return out, now


def markers_for_fit(result, faces: np.ndarray, track_ids: Sequence[int], header: Header,
                    previous_ids: Optional[Iterable[int]] = None, invalid: str = "hide",
                    ns: str = DEFAULT_NS) -> Tuple[MarkerArray, Set[int]]:
    """Markers of a frame's fitted persons (:func:`markers_for_persons`), valid or not.

    result: the frame's ``FitResult`` (None: nobody, only DELETEs of earlier markers); track_ids:
    one per person. Valid bodies get their track colour. Bodies that are not valid are left out
    (``invalid="hide"``) or drawn in :data:`INVALID_COLOR` (``invalid="grey"``); a person that
    could not be fitted at all (``fitted`` False, or vertices not finite) is never drawn.
    """
    if invalid not in INVALID_MARKERS:
        raise ValueError(f"invalid markers must be one of {', '.join(INVALID_MARKERS)}, got {invalid!r}")
    chosen, colors = [], []
    batch = 0 if result is None else len(track_ids)
    for b in range(batch):
        vertices = np.asarray(result.vertices[b])
        drawable = bool(getattr(result, "fitted", result.valid)[b]) and bool(np.isfinite(vertices).all())
        if bool(result.valid[b]) and drawable:
            chosen.append(b)
            colors.append(None)
        elif invalid == "grey" and drawable:
            chosen.append(b)
            colors.append(INVALID_COLOR)
    return markers_for_persons([np.asarray(result.vertices[b]) for b in chosen], faces,
                               [track_ids[b] for b in chosen], header, previous_ids, ns, colors=colors)


def delete_all(frame_id: str = "", ns: str = DEFAULT_NS, stamp: Any = None) -> MarkerArray:
    """MarkerArray with one DELETEALL marker (clears every marker of this publisher in RViz)."""
    m = Marker()
    m.header.frame_id = str(frame_id)
    m.header.stamp = to_stamp(stamp)
    m.ns = ns
    m.action = Marker.DELETEALL
    m.pose.orientation.w = 1.0
    arr = MarkerArray()
    arr.markers = [m]
    return arr
