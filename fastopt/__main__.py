"""``python -m fastopt``: the ``fastopt`` command."""
import sys

from .cli import main

sys.exit(main())
