"""``python -m builder`` runs the sbuild command line."""

from builder.cli import entry

entry()
