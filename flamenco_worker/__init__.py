"""Flamenco-compatible render worker daemon."""

__version__ = "0.1.0"
