"""`python -m trainer` (and `torchrun ... -m trainer fit ...`): the trainer CLI."""

import sys

from trainer.cli import main

sys.exit(main())
