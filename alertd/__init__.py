"""alertd: the joint-defense alarm daemon."""

__version__ = "0.1.0"
