"""``python -m graceful._cli``, and ``python -I <path>/graceful/_cli/__main__.py run ...``: how
``graceful.spawn(supervise=True)`` starts the supervisor, by path, so that ``graceful`` need not
be importable by name from a fresh isolated interpreter (a checkout on PYTHONPATH, say)."""

import os
import sys

if not __package__:  # run by path: make the package that holds this file importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from graceful._cli import main

sys.exit(main())
