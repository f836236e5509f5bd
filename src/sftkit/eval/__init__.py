"""Evaluation: metrics (pure functions), generation over a data file, reports, comparisons, human review."""
