"""``python -m graceful``: the command line (see ``graceful._cli``)."""

import sys

from graceful._cli import main

sys.exit(main())
