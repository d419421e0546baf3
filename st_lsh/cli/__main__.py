"""``python -m st_lsh.cli``: the same as the ``st-lsh`` command."""

import sys

from .app import main

sys.exit(main())
