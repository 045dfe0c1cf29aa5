"""``python -m headrank.cli``."""

import sys

from headrank.cli import app

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
