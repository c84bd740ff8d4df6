"""Geometry helpers: rotations and cameras."""
