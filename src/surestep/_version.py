"""The one place the release version is written."""

__version__ = "0.2.0"
