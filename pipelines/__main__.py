"""``python -m pipelines`` runs the ``sea`` command line."""
import sys

from pipelines.job.cli import main

sys.exit(main())
