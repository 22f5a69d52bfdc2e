"""celery: ``install()`` connects graceful's shutdown to the worker's signals."""

from .._integrations.celery import install

__all__ = ["install"]
