"""SMPL body model: loading, forward kinematics, derived tables, priors, synthetic model."""
