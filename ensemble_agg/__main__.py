"""``python -m ensemble_agg`` runs ``agg-client``."""

import sys

from .cli.agg_client import main

if __name__ == "__main__":
    sys.exit(main())
