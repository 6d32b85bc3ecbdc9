"""A module no payload may make the worker import: importing it leaves a file behind
(``<ledger>.imported``), which fault case 7 looks for."""

import os
from pathlib import Path

from tests.faults.jobs import LEDGER_ENV

if os.environ.get(LEDGER_ENV):
    Path(os.environ[LEDGER_ENV] + ".imported").write_text("imported\n")


class Canary:
    """Looks like a job to a careless loader: a class with ``perform``."""

    def perform(self, path):
        Path(path).write_text("performed\n")
