"""Run relayd: python -m relayd --policy FILE --spool DIR [--listen ADDR:PORT ...]; see --help."""

import sys

from relayd.cli import main

sys.exit(main())
