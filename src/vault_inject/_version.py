"""The version, in one place (the package face and the cache header read it)."""

__version__ = "0.1.0"
