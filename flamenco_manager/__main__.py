"""`python -m flamenco_manager`."""

from flamenco_manager.cli import run

run()
