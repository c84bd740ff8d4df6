"""Learned front-ends in plain PyTorch (ViTPose, CLIFF), their checkpoints, and LiDAR person proposals."""
