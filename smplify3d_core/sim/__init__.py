"""Synthetic scenes: posed people, a pinhole camera, a spinning LiDAR, detector noise."""
