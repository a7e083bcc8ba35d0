"""``python -m edgensd``: the same as the ``edgensd`` command."""

import sys

from edgensd.cli.main import main

sys.exit(main())
