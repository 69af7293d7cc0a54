"""`python -m tx2_inference.convert`: the same as the `tx2-convert` command."""

import sys

from tx2_inference.convert.cli import main

sys.exit(main())
