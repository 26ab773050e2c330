"""`python -m controlplane.cli` runs the `encedeus` command."""

import sys

from controlplane.cli import main

sys.exit(main())
