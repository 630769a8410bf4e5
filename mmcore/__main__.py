"""``python -m mmcore`` runs the command line."""

import sys

from mmcore.cli import main

sys.exit(main())
