"""``python -m lgcloud.cli``: the same as the ``lgcloud`` command."""

import sys

from . import main

sys.exit(main())
