"""uvicorn run from Python, inside ``@graceful.main``: ``run(server)``, ``await serve(server)``."""

from .._integrations.uvicorn import run, serve

__all__ = ["run", "serve"]
