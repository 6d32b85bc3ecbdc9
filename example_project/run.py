#!/usr/bin/env python
"""Run the example site with a background worker, in one command.

    python example_project/run.py            # site on http://127.0.0.1:8000/ plus a worker
    python example_project/run.py --smoke    # enqueue one email, run a worker until it is sent, exit

Steps:

1. Find Redis: ``REDIS_URL`` (default ``redis://localhost:6379/0``) if it answers
   PING, else a ``redis-server`` started here on a spare port (stopped on exit),
   else print how to get one and exit 1.
2. ``migrate`` the SQLite database and create the demo superuser (admin / admin).
3. Start ``manage.py runjobs`` in a subprocess, then ``runserver`` (or, with
   ``--smoke``, wait for the welcome email instead), and stop the worker with
   SIGTERM on the way out.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEMO_ADMIN = ("admin", "admin")
SMOKE_USER = ("demo", "demo@example.com")
SMOKE_SUBJECT = "Subject: Welcome to the example site"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="send one welcome email through a worker, then exit")
    parser.add_argument("--addr", default="127.0.0.1:8000", help="runserver address (default 127.0.0.1:8000)")
    parser.add_argument("--timeout", type=float, default=30, help="--smoke: seconds to wait for the email")
    options = parser.parse_args()

    # SIGTERM to this script unwinds like Ctrl-C, so the finally blocks stop what it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    redis_url, redis_proc = find_or_start_redis()
    if redis_url is None:
        return 1
    try:
        env = child_env(redis_url)
        os.environ.update(env)
        setup_django()
        if options.smoke:
            return smoke(env, options.timeout)
        return serve(env, options.addr)
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)


# -- Redis ------------------------------------------------------------------------------------


def find_or_start_redis():
    """Return (url, process we started or None); (None, None) after printing how to get Redis."""
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if redis_answers(url):
        print(f"run.py: using Redis at {url}", flush=True)
        return url, None
    binary = shutil.which("redis-server")
    if binary is None:
        print(
            f"run.py: no Redis answers at {url}: install one (apt-get install redis-server) "
            "or set REDIS_URL to a Redis server",
            file=sys.stderr,
        )
        return None, None
    port = spare_port()
    data_dir = tempfile.mkdtemp(prefix="bgjobs-example-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", data_dir],
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C must not stop Redis before the worker has finished with it
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            print(f"run.py: redis-server did not start on port {port}", file=sys.stderr)
            return None, None
        time.sleep(0.05)
    print(f"run.py: no Redis answered at {os.environ.get('REDIS_URL') or DEFAULT_REDIS_URL}; "
          f"started redis-server at {url} for this run", flush=True)
    return url, proc


def redis_answers(url):
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return client.ping()
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def spare_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- Django -----------------------------------------------------------------------------------


def child_env(redis_url):
    """Variables for this process and the manage.py subprocesses alike."""
    paths = [str(HERE), str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "exampleproject.settings",
        "PYTHONPATH": os.pathsep.join(paths),
        "PYTHONUNBUFFERED": "1",
    }


def setup_django():
    sys.path[:0] = [str(HERE), str(REPO_ROOT)]
    import django
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    users = get_user_model().objects
    username, password = DEMO_ADMIN
    if not users.filter(username=username).exists():
        users.create_superuser(username, "admin@example.com", password)
        print(f"run.py: created the demo superuser {username} / {password}", flush=True)


def start_worker(env, stdout=None):
    command = [sys.executable, str(HERE / "manage.py"), "runjobs", "-c", "2"]
    # Its own session: Ctrl-C in the terminal reaches only this script, which then
    # stops the worker with one SIGTERM (a second signal could mean "hurry up").
    return subprocess.Popen(
        command, cwd=HERE, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
        stdout=stdout, stderr=subprocess.STDOUT if stdout else None, start_new_session=True,
    )


def stop_worker(proc, timeout_s=30):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        print(f"run.py: worker did not stop within {timeout_s}s; killing it", file=sys.stderr)
        proc.kill()
        return proc.wait()


def serve(env, addr):
    worker = start_worker(env)
    print(f"run.py: worker pid {worker.pid}; site at http://{addr}/signup/ (admin at /admin/); Ctrl-C stops both",
          flush=True)
    # --noreload keeps the server one process, so stopping it here leaves nothing behind.
    server = subprocess.Popen([sys.executable, str(HERE / "manage.py"), "runserver", "--noreload", addr],
                              cwd=HERE, env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=10)
        stop_worker(worker)


def smoke(env, timeout_s):
    """Enqueue one welcome email, run a worker until it is printed, and show it."""
    from django.contrib.auth import get_user_model

    from accounts.jobs import EmailSenderJob

    username, email = SMOKE_USER
    user, _ = get_user_model().objects.get_or_create(username=username, defaults={"email": email})
    job = EmailSenderJob.perform_later(user.id, "welcome")
    print(f"run.py: enqueued EmailSenderJob jid={job.jid} for user {user.username} <{user.email}>", flush=True)

    log_dir = Path(tempfile.mkdtemp(prefix="bgjobs-example-worker-"))
    log_path = log_dir / "runjobs.log"
    with open(log_path, "wb") as log:
        worker = start_worker(env, stdout=log)
    deadline = time.monotonic() + timeout_s
    sent = exited_early = False
    try:
        while time.monotonic() < deadline:
            sent = SMOKE_SUBJECT in log_path.read_text(errors="replace")
            exited_early = worker.poll() is not None
            if sent or exited_early:
                break
            time.sleep(0.1)
    finally:
        code = stop_worker(worker)
    output = log_path.read_text(errors="replace")
    if not sent:
        why = f"the worker exited with code {code}" if exited_early else f"no email within {timeout_s:.0f}s"
        print(f"run.py: smoke FAILED: {why}; worker output:\n{output}", file=sys.stderr)
        return 1
    print("run.py: the worker sent this email:\n")
    print(extract_email(output))
    print(f"run.py: smoke OK (worker stopped with exit code {code})")
    shutil.rmtree(log_dir, ignore_errors=True)
    return 0


def extract_email(output):
    """The console email backend's text for the welcome email, from the worker's output."""
    lines = output.splitlines()
    subject_at = next(i for i, line in enumerate(lines) if line.startswith(SMOKE_SUBJECT))
    start = max((i for i in range(subject_at) if lines[i].startswith("Content-Type:")), default=subject_at)
    end = next((i for i in range(subject_at, len(lines)) if set(lines[i]) == {"-"}), len(lines))
    return "\n".join(lines[start:end + 1])


if __name__ == "__main__":
    sys.exit(main())
