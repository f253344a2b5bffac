"""`python -m regbench.cli ...`: the console script `regbench` without its launcher script."""

import logging
import sys

from regbench.cli.commands import console_main

logging.basicConfig(level=logging.INFO)
sys.exit(console_main())
