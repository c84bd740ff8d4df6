#!/usr/bin/env bash
# Builds the ROS 2 interfaces in msg/ (smplify3d_ros/msg/SMPL, SMPLArray) against the ROS 2
# wheels in .venv (the ROS 2 Kilted wheels from PyPI; no ROS install needed) and installs the
# generated code into that venv. Called by scripts/setup.sh; safe to run again (e.g. after
# editing msg/*.msg).
#
#   1. Rewrites the wheels' exported CMake files, which point at the wheel builder's Python
#      (/opt/python/cp3XX-cp3XX/...), to this venv's Python and NumPy include dirs (idempotent).
#   2. Configures CMakeLists.txt (from a tree of links, build/msgs/src) with -DSMPLIFY3D_INSTALL_PYTHON_SOURCES=OFF and installs into a
#      staging prefix, build/msgs/install.
#   3. Copies only the generated code into the venv:
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

# 2. Configure, build and install into the staging prefix.
mkdir -p "$BUILD_DIR"
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ -f "$BUILD_DIR/cmake/CMakeCache.txt" ] && ! grep -q "^CMAKE_GENERATOR:INTERNAL=${generator[1]:-Unix Makefiles}$" "$BUILD_DIR/cmake/CMakeCache.txt"; then
  rm -rf "$BUILD_DIR/cmake"
fi
# The venv (with NumPy's include dir, which the generated targets export) lies inside the
# repository, and CMake refuses to export include dirs inside the source tree: configure a
# source tree of links under build/ instead (only CMakeLists.txt, package.xml and msg/ are used
# with SMPLIFY3D_INSTALL_PYTHON_SOURCES=OFF).
SRC="$BUILD_DIR/src"
mkdir -p "$SRC"
for item in CMakeLists.txt package.xml msg; do ln -sfn "$ROOT/$item" "$SRC/$item"; done
cmake -S "$SRC" -B "$BUILD_DIR/cmake" "${generator[@]}" --log-level=WARNING \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$STAGE" \
  -DPython3_EXECUTABLE="$PY" \
  -DSMPLIFY3D_INSTALL_PYTHON_SOURCES=OFF \
  -DBUILD_TESTING=OFF >"$BUILD_DIR/configure.log" 2>&1 \
  || { cat "$BUILD_DIR/configure.log" >&2; echo "[build_msgs] cmake configure failed" >&2; exit 1; }
cmake --build "$BUILD_DIR/cmake" -j "${JOBS:-$(nproc)}" >"$BUILD_DIR/build.log" 2>&1 \
  || { tail -n 60 "$BUILD_DIR/build.log" >&2; echo "[build_msgs] build failed (log: $BUILD_DIR/build.log)" >&2; exit 1; }
rm -rf "$STAGE"
cmake --install "$BUILD_DIR/cmake" >/dev/null

# 3. Copy the generated code into the venv (replacing what an earlier run put there).
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
