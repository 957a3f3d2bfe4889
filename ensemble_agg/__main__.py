"""``python -m ensemble_agg`` runs ``agg-client``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
