"""ROS 2 layer of SMPLify-3D (node, conversions, bag tools). Imports rclpy; the core never does.

The interfaces in msg/ import as ``smplify3d_ros.msg`` (``SMPL``, ``SMPLArray``). Installed by
colcon, the generated code sits next to these sources. In the repository's .venv
(``scripts/build_msgs.sh``) it sits in ``site-packages/_smplify3d_ros_generated``, which is
appended to this package's ``__path__`` here, so the rest of the package stays the editable
checkout.
"""
import os as _os
import pkgutil as _pkgutil
import sys as _sys


def _generated_interface_dirs():
    """Folders named _smplify3d_ros_generated on sys.path (the venv build of msg/)."""
    found = []
    for entry in _sys.path:
        candidate = _os.path.join(entry, "_smplify3d_ros_generated") if entry else ""
        if candidate and _os.path.isdir(candidate) and candidate not in found:
            found.append(candidate)
    return found


__path__ = _pkgutil.extend_path(__path__, __name__)
__path__.extend(d for d in _generated_interface_dirs() if d not in __path__)
