"""gunicorn's server hooks for a ``gunicorn.conf.py``::

import graceful.integrations.gunicorn
globals().update(graceful.integrations.gunicorn.hooks(drain=10))
"""

from .._integrations.gunicorn import Hooks, hooks

__all__ = ["Hooks", "hooks"]
