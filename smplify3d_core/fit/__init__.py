"""SMPLify-3D fitting: visibility filter, ICP rough alignment, losses, the three-stage optimizer."""
