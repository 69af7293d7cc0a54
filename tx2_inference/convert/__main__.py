"""`python -m tx2_inference.convert`: the same as the `tx2-convert` command."""

import sys

from tx2_inference.convert.cli import main

if __name__ == '__main__':  # importing this module (a model config naming it) runs nothing
    sys.exit(main())
