"""``python -m matscreen.flows.cli``: the ``matscreen`` command."""

import sys

from matscreen.flows.cli.app import main

sys.exit(main())
