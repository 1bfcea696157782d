"""The installed tslens version (recorded in converted models and benchmark lines)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tslens")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
