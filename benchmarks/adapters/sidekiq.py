"""Ruby's Sidekiq (Debian's ``ruby-sidekiq``): ``perform_async`` / ``push_bulk``; the ``sidekiq`` CLI.

The job and the client loops are Ruby (``sidekiq_job.rb``); this module only builds the
command lines.  Sidekiq (open source) runs one process; two processes are two copies.
"""

import shutil
import subprocess
from pathlib import Path

LABEL = "Sidekiq (Ruby)"
BULK = True
MULTIPROCESS = "copies"

JOB_RB = str(Path(__file__).resolve().with_name("sidekiq_job.rb"))


def available():
    if shutil.which("ruby") is None or shutil.which("sidekiq") is None:
        return "ruby-sidekiq is not installed (apt-get install -y ruby-sidekiq)"
    return None


def version():
    out = subprocess.run(
        ["ruby", "-e", 'require "sidekiq"; require "redis"; print Sidekiq::VERSION, " (Ruby ", RUBY_VERSION, ")"'],
        capture_output=True, text=True, check=True,
    )
    return out.stdout.strip()


def client_argv(args):
    return ["ruby", JOB_RB, *args]


def worker_argv(processes, threads, index):
    return [shutil.which("sidekiq"), "-r", JOB_RB, "-c", str(threads), "-q", "default", "-e", "production"]
