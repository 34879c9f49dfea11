"""Evaluation against chorus annotations: metrics, baselines, the report."""
