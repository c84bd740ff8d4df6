"""Evaluation: metrics (and, later, dataset readers)."""
