#!/usr/bin/env python
"""Django's command-line utility for the example project."""

import os
import sys
from pathlib import Path


def main():
    here = Path(__file__).resolve().parent
    # Lets the example run from a checkout even before `pip install -e .`.
    sys.path[1:1] = [str(here.parent)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
