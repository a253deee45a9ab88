"""``python -m diffops``: the command line."""

import sys

from diffops.cli import main

sys.exit(main())
