"""`python -m core.cli ...`, how the dev stack, the tests and the bench start the gateway and the worker."""

import sys

from core.cli.main import main

sys.exit(main())
