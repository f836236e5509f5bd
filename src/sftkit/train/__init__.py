"""Training recipes (sft.py reads top to bottom) and their helpers."""
