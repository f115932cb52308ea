"""`python -m devstack -- COMMAND...`: COMMAND against a throwaway PostgreSQL and Redis on loopback."""

from __future__ import annotations

import sys

from devstack import main

sys.exit(main(sys.argv[1:]))
