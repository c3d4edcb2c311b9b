"""``python -m cli``: the command line (see :mod:`cli.app`).

The entry point sits above both the core and the runtime, so it may import either: the
in-process demo needs only the core and the examples, the operator commands the runtime.
"""

from __future__ import annotations

import sys

from cli.app import main

if __name__ == "__main__":
    sys.exit(main())
