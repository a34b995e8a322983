"""Flamenco v3-compatible render farm manager."""

__version__ = "0.1.0"
