"""``python -m tfad`` runs the CLI."""

import sys

from tfad.cli import main

sys.exit(main())
