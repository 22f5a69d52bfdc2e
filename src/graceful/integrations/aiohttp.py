"""aiohttp's ``web.run_app`` inside ``@graceful.main``: ``run_app(app, ...)``."""

from .._integrations.aiohttp import run_app

__all__ = ["run_app"]
