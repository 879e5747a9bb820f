"""``python -m proto_rewrite``: the same as the ``proto-rewrite`` command."""

import sys

from proto_rewrite.cli import main

sys.exit(main())
