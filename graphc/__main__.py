"""``python -m graphc ...`` runs the graphc command line tool (see graphc.cli)."""

import sys

from graphc.cli import main

if __name__ == "__main__":
    sys.exit(main())
