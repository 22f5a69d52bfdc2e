"""hypercorn's command with ``--workers N``: ``install()`` in each worker's lifespan startup."""

from .._integrations.hypercorn import install

__all__ = ["install"]
