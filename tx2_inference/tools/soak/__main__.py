"""``python -m tx2_inference.tools.soak``: the soak's command line (`cli.main`)."""

import sys

from tx2_inference.tools.soak.cli import main

if __name__ == '__main__':
    sys.exit(main())
