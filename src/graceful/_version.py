"""The version, as a static string: ``import graceful`` must not pay for importlib.metadata."""

__version__ = "0.1.0"
