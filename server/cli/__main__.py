"""``python -m server.cli``: the ``switchboard`` command."""

import sys

from server.cli.main import main

sys.exit(main())
