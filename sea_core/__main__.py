"""``python -m sea_core`` runs the ``sea`` command line."""
import sys

from sea_core.cli import main

sys.exit(main())
