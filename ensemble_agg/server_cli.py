"""``python -m ensemble_agg.server_cli`` runs ``agg-server`` (see ``cli.agg_server``)."""

import sys

from .cli.agg_server import main

if __name__ == "__main__":
    sys.exit(main())
