"""`python -m pythia_suite ...` (and `torchrun ... -m pythia_suite train ...`): the `pythia-suite` command."""

import sys

from .cli import main

sys.exit(main())
