"""Evaluation: metrics, scene folders, dataset readers (HumanM3, SLOPER4D, demo format), the eval loop."""
