"""Installs the pure-Python core (smplify3d_core) and the ROS 2 layer (smplify3d_ros).

`pip install -e .` gives the `smplify3d` command. The ROS 2 interfaces in msg/ are built
separately (ament_cmake, see CMakeLists.txt).
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["smplify3d_core", "smplify3d_core.*", "smplify3d_ros", "smplify3d_ros.*"]),
)
