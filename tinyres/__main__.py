"""``python -m tinyres`` runs the command line, as the ``tinyres`` script does."""

import sys

from tinyres.cli import main

sys.exit(main())
