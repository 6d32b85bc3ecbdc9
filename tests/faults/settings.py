"""Settings for the worker subprocesses of the fault cases: the test settings, plus this
package as an app (so ``tests/faults/jobs.py`` is loaded) and per-case ``BGJOBS`` changes
given as JSON in ``BGJOBS_FAULT_SETTINGS``."""

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import BGJOBS, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.faults"]
BGJOBS = {**BGJOBS, **json.loads(os.environ.get("BGJOBS_FAULT_SETTINGS") or "{}")}
