"""smplify3d_core: camera + LiDAR SMPL fitting for robots, with no ROS dependency.

Subpackages: ``body`` (SMPL loading, derived tables, priors, synthetic model),
``geometry`` (rotations, cameras), ``sim`` (synthetic scenes), ``eval`` (metrics),
``io`` (scene folders).
"""

__version__ = "0.1.0"
