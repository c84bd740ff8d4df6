#!/usr/bin/env bash
# Builds the ROS 2 interfaces the project needs against the ROS 2 wheels in .venv (the ROS 2
# Kilted wheels from PyPI; no ROS install needed) and installs the generated code into that
# venv. Called by scripts/setup.sh; safe to run again (e.g. after editing msg/*.msg).
#
#   1. Rewrites the wheels' exported CMake files, which point at the wheel builder's Python
#      (/opt/python/cp3XX-cp3XX/...), to this venv's Python and NumPy include dirs (idempotent).
#   2. tf2_msgs (interfaces/tf2_msgs: TFMessage only, the upstream definition), ONLY when
#      `import tf2_msgs.msg` fails: the PyPI wheels have no tf2_msgs, and a ROS distro's own
#      tf2_msgs must win. Built like step 3 into build/msgs/tf2_msgs/install, then that whole
#      prefix (lib/, lib/pythonX.Y/site-packages/tf2_msgs, share/, include/) is copied into the
#      venv, as a wheel would install it. To rebuild it, delete <site-packages>/tf2_msgs first.
#   3. smplify3d_ros (msg/SMPL, SMPLArray, Observation, ObservationArray): configures
#      CMakeLists.txt (from a tree of links, build/msgs/src) with
#      -DSMPLIFY3D_INSTALL_PYTHON_SOURCES=OFF and installs into a staging prefix, build/msgs/install.
#      Copies only the generated code into the venv:
#        <venv>/lib/libsmplify3d_ros__rosidl_*.so      (on LD_LIBRARY_PATH via ros-wheels-bootstrapper)
#        <site-packages>/_smplify3d_ros_generated/     (msg/ and the typesupport extension modules)
#      smplify3d_ros/__init__.py appends that folder to the package's __path__, so
#      `from smplify3d_ros.msg import SMPL` works while every other module of smplify3d_ros keeps
#      coming from the editable checkout. (A folder named site-packages/smplify3d_ros would shadow
#      the editable install: Python's path finder would take it as a namespace package before
#      setuptools' editable finder is asked.)
#
# Environment: VENV (default .venv), BUILD_DIR (default build/msgs), JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$(cd "${VENV:-.venv}" && pwd)
PY="$VENV/bin/python"
BUILD_DIR=${BUILD_DIR:-$ROOT/build/msgs}
STAGE="$BUILD_DIR/install"
GENERATED_NAME=_smplify3d_ros_generated
t0=$(date +%s)

[ -x "$PY" ] || { echo "[build_msgs] no venv python at $PY" >&2; exit 1; }
command -v cmake >/dev/null || { echo "[build_msgs] cmake not found (apt-get install cmake)" >&2; exit 1; }

read -r PY_INCLUDE NP_INCLUDE SITE PYVER < <("$PY" - <<'PY'
import sys, sysconfig, numpy
print(sysconfig.get_path("include"), numpy.get_include(), sysconfig.get_path("platlib"),
      f"{sys.version_info.major}.{sys.version_info.minor}")
PY
)
[ -f "$PY_INCLUDE/Python.h" ] || {
  echo "[build_msgs] $PY_INCLUDE/Python.h missing: install the Python headers (Debian: python$PYVER-dev)" >&2; exit 1; }

# 1. Path rewrites in the wheels' exported CMake targets (only files that still name /opt/python).
n_rewritten=0
while IFS= read -r -d '' f; do
  sed -i -E \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${PY_INCLUDE}#g" \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#${NP_INCLUDE}#g" \
    "$f"
  n_rewritten=$((n_rewritten + 1))
done < <(grep -lZ --include='*Export*.cmake' -r '/opt/python/' "$VENV/share" 2>/dev/null || true)
echo "[build_msgs] rewrote /opt/python paths in $n_rewritten exported CMake file(s)"

# Configure, build and install one interface package into a staging prefix.
#   build_package NAME SOURCE_DIR WORK_DIR ITEM... [-- CMAKE_ARG...]
# The venv (with NumPy's include dir, which the generated targets export) lies inside the
# repository, and CMake refuses to export include dirs inside the source tree: each package is
# configured from a source tree of links, WORK_DIR/src, holding only ITEMs of SOURCE_DIR.
# Installs into WORK_DIR/install (emptied first).
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
build_package() {
  local name=$1 source=$2 work=$3
  shift 3
  local items=() extra=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do items+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  extra=("$@")
  mkdir -p "$work/src"
  if [ -f "$work/cmake/CMakeCache.txt" ] && ! grep -q "^CMAKE_GENERATOR:INTERNAL=${generator[1]:-Unix Makefiles}$" "$work/cmake/CMakeCache.txt"; then
    rm -rf "$work/cmake"
  fi
  local item
  for item in "${items[@]}"; do ln -sfn "$source/$item" "$work/src/$item"; done
  cmake -S "$work/src" -B "$work/cmake" "${generator[@]}" --log-level=WARNING \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$work/install" \
    -DPython3_EXECUTABLE="$PY" \
    -DBUILD_TESTING=OFF "${extra[@]}" >"$work/configure.log" 2>&1 \
    || { cat "$work/configure.log" >&2; echo "[build_msgs] $name: cmake configure failed" >&2; exit 1; }
  cmake --build "$work/cmake" -j "${JOBS:-$(nproc)}" >"$work/build.log" 2>&1 \
    || { tail -n 60 "$work/build.log" >&2; echo "[build_msgs] $name: build failed (log: $work/build.log)" >&2; exit 1; }
  rm -rf "$work/install"
  cmake --install "$work/cmake" >/dev/null
}
mkdir -p "$BUILD_DIR"

# 2. tf2_msgs, only where none is importable (a ROS distro's own wins).
if (cd / && "$PY" -c "import tf2_msgs.msg") >/dev/null 2>&1; then
  echo "[build_msgs] tf2_msgs is importable ($(cd / && "$PY" -c "import os, tf2_msgs; print(os.path.dirname(tf2_msgs.__file__))")); not building ours"
else
  TF2_WORK="$BUILD_DIR/tf2_msgs"
  build_package tf2_msgs "$ROOT/interfaces/tf2_msgs" "$TF2_WORK" CMakeLists.txt package.xml msg
  [ -d "$TF2_WORK/install/lib/python$PYVER/site-packages/tf2_msgs/msg" ] \
    || { echo "[build_msgs] no generated Python package tf2_msgs in $TF2_WORK/install" >&2; exit 1; }
  rm -rf "${SITE:?}/tf2_msgs"
  cp -a "$TF2_WORK/install/." "$VENV/"
  (cd / && "$PY" -c "from tf2_msgs.msg import TFMessage; TFMessage()") \
    || { echo "[build_msgs] the generated tf2_msgs does not import" >&2; exit 1; }
  echo "[build_msgs] ok: tf2_msgs.msg.TFMessage (interfaces/tf2_msgs) installed into $VENV"
fi

# 3. smplify3d_ros's own messages (only CMakeLists.txt, package.xml and msg/ are used with
# SMPLIFY3D_INSTALL_PYTHON_SOURCES=OFF).
build_package smplify3d_ros "$ROOT" "$BUILD_DIR" CMakeLists.txt package.xml msg -- -DSMPLIFY3D_INSTALL_PYTHON_SOURCES=OFF

# Copy the generated code into the venv (replacing what an earlier run put there).
STAGE_PKG="$STAGE/lib/python$PYVER/site-packages/smplify3d_ros"
[ -d "$STAGE_PKG/msg" ] || { echo "[build_msgs] no generated Python package in $STAGE_PKG" >&2; exit 1; }
rm -f "$VENV"/lib/libsmplify3d_ros__*.so
cp -a "$STAGE"/lib/libsmplify3d_ros__*.so "$VENV/lib/"
rm -rf "${SITE:?}/$GENERATED_NAME"
mkdir -p "$SITE/$GENERATED_NAME"
cp -a "$STAGE_PKG/msg" "$SITE/$GENERATED_NAME/"
cp -a "$STAGE_PKG"/*.so "$SITE/$GENERATED_NAME/"
# (no __init__.py there on purpose: the package's __init__ is the checkout's)

(cd / && "$PY" -c "from smplify3d_ros.msg import SMPL, SMPLArray; SMPLArray(persons=[SMPL()])") \
  || { echo "[build_msgs] the generated messages do not import" >&2; exit 1; }
echo "[build_msgs] ok: smplify3d_ros.msg.SMPL, SMPLArray installed into $VENV ($(( $(date +%s) - t0 )) s)"
