"""sftkit: supervised fine-tuning from raw data to an evaluated model."""

__version__ = "0.1.0"
