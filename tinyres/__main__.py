"""``python -m tinyres`` runs the command line, as the ``tinyres`` script does."""

from tinyres.cli import script

script()
