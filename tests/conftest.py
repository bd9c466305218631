"""Every plan compiled in the test suite is checked by the independent verifier."""

import os

os.environ.setdefault("GRAPHC_VERIFY", "1")
