"""A job's payload: the one JSON object stored in Redis, in Sidekiq's format.

Fields written at enqueue: ``class``, ``args``, ``jid`` (24 hex chars), ``queue``,
``retry``, ``created_at``, ``enqueued_at`` and ``at`` for a scheduled job.  The worker
adds ``retry_count``, ``error_class``, ``error_message``, ``failed_at``, ``retried_at``
on failure, and ``error_backtrace`` compressed as Sidekiq does (:func:`compress_backtrace`;
:func:`backtrace_lines` reads that and the plain list that Sidekiq before 6.0.1, and this
app before 0.2, wrote).  Times are written as ``BGJOBS["SIDEKIQ_VERSION"]`` says and read
in every version's form (:func:`epoch_s`).  A job waiting in a sorted set is stored
:func:`unscheduled`; the Lua that moves it appends its new ``enqueued_at`` without
re-encoding the rest (``lua/json_members.lua``).
"""

import base64
import datetime
import hashlib
import json
import math
import re
import secrets
import time
import zlib

from django_bgjobs import conf
from django_bgjobs.errors import InvalidOptionError, InvalidPayloadError

# Checked with fullmatch: ``$`` would also match before a trailing newline ("default\n").
_QUEUE_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


def valid_queue_name(name):
    """True when ``name`` can name a queue: 1 to 128 letters, digits, ``_``, ``-`` or ``.``, and
    not ``.`` or ``..`` (a browser rewrites those path segments, so no admin URL could reach them).
    The one test of a queue name, for names given by callers and names read from Redis."""
    return isinstance(name, str) and name not in (".", "..") and _QUEUE_NAME_RE.fullmatch(name) is not None


#: The longest duration an option may give (100 years): a longer one means a mistake, and
#: would overflow the milliseconds Redis is given for a lock's or a result's expiry.
MAX_OPTION_SECONDS = 100 * 365 * 24 * 3600

#: The deepest a payload may nest JSON arrays and objects, its own object counting as level 1
#: (so its ``args`` list is level 2 and a list passed as an argument level 3).  Ruby's
#: ``JSON.parse`` and ``JSON.generate`` refuse deeper documents by default (``max_nesting:
#: 100``), so Sidekiq could neither write nor read one.  Enqueueing deeper arguments raises
#: :class:`~django_bgjobs.errors.SerializationError`; :func:`loads` refuses a deeper payload
#: read from Redis (the worker buries it instead of retrying it).
MAX_NESTING_DEPTH = 100


def option_seconds(name, value, bound):
    """An option given in seconds or as a timedelta (``wait``, ``expires_in``, ``lock_ttl``,
    ``timeout``), in seconds, checked finite, at most :data:`MAX_OPTION_SECONDS` and ``bound``
    (``">= 0"`` or ``"> 0"``); None stays None.  Raises :class:`InvalidOptionError` naming
    ``name``, never ``OverflowError`` (``wait=10**400``)."""
    if value is None:
        return None
    if not is_duration(value):
        raise InvalidOptionError(f"{name} must be a number of seconds or a timedelta, not {type(value).__name__}")
    seconds = seconds_of(value)
    if not math.isfinite(seconds) or seconds < 0 or (bound == "> 0" and seconds == 0) or seconds > MAX_OPTION_SECONDS:
        wanted = "a finite number of seconds >= 0" if bound == ">= 0" else "more than 0 seconds, and finite"
        raise InvalidOptionError(f"{name} must be {wanted}, at most 100 years, got {short_repr(value)}")
    return seconds


def is_duration(value):
    """True for a number of seconds (not a bool) or a timedelta."""
    return isinstance(value, datetime.timedelta) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def seconds_of(value):
    """A duration (:func:`is_duration`) in float seconds; an int past float range is ``inf``,
    not an ``OverflowError``.  The caller checks it finite and at most :data:`MAX_OPTION_SECONDS`."""
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    try:
        return float(value)
    except OverflowError:
        return math.inf


def short_repr(value):
    """``value`` for a message; a huge int by its size (its repr may be thousands of digits,
    and past 4300 digits ``str()`` itself raises)."""
    if isinstance(value, int) and abs(value) > 10**18:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


def new_jid():
    """A fresh job id: 24 lowercase hex characters, like Sidekiq's."""
    return secrets.token_hex(12)


def new_jids(count):
    """``count`` fresh job ids from one call to the system's random source (a bulk enqueue
    would otherwise spend a tenth of its time asking for them one by one)."""
    text = secrets.token_hex(12 * count)
    return [text[i:i + 24] for i in range(0, 24 * count, 24)]


def now_s():
    """Epoch seconds as a float: the unit of every payload time and sorted-set score."""
    return time.time()


# Sidekiq 8 writes times as integer epoch milliseconds; no epoch-seconds value is this big
# before the year 5138, so a bigger number is read as milliseconds.
_MS_THRESHOLD = 100_000_000_000


def epoch_s(value):
    """A payload time (epoch seconds as Sidekiq up to 7 writes them, or Sidekiq 8's integer
    milliseconds) as float epoch seconds; None when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = value / 1000.0 if abs(value) > _MS_THRESHOLD else float(value)
    except OverflowError:  # an int past float range
        return None
    return seconds if math.isfinite(seconds) else None


def timestamp(seconds):
    """A payload time (``created_at``, ``enqueued_at``, ``failed_at``, ``retried_at``) as we write
    it: epoch seconds as a float for Sidekiq 6 and 7, integer epoch milliseconds for Sidekiq 8
    (``BGJOBS["SIDEKIQ_VERSION"]``).  Sorted-set scores and ``at`` stay in seconds in all."""
    return int(seconds * 1000) if conf.get("SIDEKIQ_VERSION") == 8 else seconds


def compress_backtrace(lines):
    """``error_backtrace`` as Sidekiq writes it (``job_retry.rb``; compressed since 6.0.1,
    strict Base64 since 7.2.1): Base64 of the zlib-deflated JSON list.  Sidekiq 7 and later
    can read no other form."""
    return base64.b64encode(zlib.compress(_encode(list(lines)).encode())).decode()


#: The most a compressed ``error_backtrace`` may inflate to before it is shown as its raw text.
MAX_BACKTRACE_BYTES = 1024 * 1024


def backtrace_lines(value):
    """An ``error_backtrace`` as a list of lines, in any form: Sidekiq's compressed one (Ruby's
    ``Base64.encode64`` breaks it into lines of 60 characters, which are skipped), a plain list,
    or other text (its lines)."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(line) for line in value]
    if not isinstance(value, str):
        return [str(value)]
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(base64.b64decode("".join(value.split()), validate=True), MAX_BACKTRACE_BYTES)
        if inflater.unconsumed_tail:  # a "backtrace" that inflates past any real one: not shown
            raise ValueError("too large")
        decoded = json.loads(text)
    except (ValueError, zlib.error, RecursionError):
        return value.splitlines()
    return [str(line) for line in decoded] if isinstance(decoded, list) else [str(decoded)]


# One encoder for every payload: json.dumps with non-default options builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def dumps(payload):
    """Encode a payload dict compactly."""
    return _encode(payload)


def unscheduled(payload):
    """``payload`` without ``at`` and ``enqueued_at``: how a job waits in a sorted set, as
    Sidekiq stores it (the score says when; Sidekiq's poller would schedule a payload that
    carries ``at`` once more), and what a move to a queue stamps anew."""
    return {name: value for name, value in payload.items() if name not in ("at", "enqueued_at")}


#: A payload read back may pass ``MAX_PAYLOAD_BYTES`` by this much: the error fields a failure adds.
ERROR_FIELDS_ALLOWANCE_BYTES = 64 * 1024


def loads(raw):
    """Decode and check a payload read from Redis; raise :class:`InvalidPayloadError` with the reason."""
    limit = conf.get("MAX_PAYLOAD_BYTES")
    if limit is not None and len(raw) > limit + ERROR_FIELDS_ALLOWANCE_BYTES:
        raise InvalidPayloadError(
            f"payload is {len(raw):,} bytes, over BGJOBS['MAX_PAYLOAD_BYTES'] ({limit:,}); not decoded"
        )
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidPayloadError(f"payload is not UTF-8 text ({exc})") from None
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise InvalidPayloadError(f"payload is not valid JSON ({exc})") from None
    except RecursionError:  # json's decoder recurses once per level: thousands of them
        raise InvalidPayloadError(f"payload is nested deeper than MAX_NESTING_DEPTH ({MAX_NESTING_DEPTH}) "
                                  "levels; not decoded") from None
    # Counting brackets first (at C speed) spares the walk to every payload with few of them.
    if raw.count("[") + raw.count("{") > MAX_NESTING_DEPTH and nested_deeper_than(payload, MAX_NESTING_DEPTH):
        raise InvalidPayloadError(f"payload is nested deeper than MAX_NESTING_DEPTH ({MAX_NESTING_DEPTH}) levels")
    if not isinstance(payload, dict):
        raise InvalidPayloadError(f"payload is a JSON {type(payload).__name__}, not an object")
    cls = payload.get("class")
    if not isinstance(cls, str) or not cls:
        raise InvalidPayloadError("payload has no 'class' string")
    if not isinstance(payload.get("args", []), list):
        raise InvalidPayloadError("payload 'args' is not a list")
    payload.setdefault("args", [])
    return payload


_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PRINTABLE_MAX_CHARS = 200


def printable(value):
    """``value`` (a name, jid or other field read from Redis) for a log line: control characters
    escaped (``"\\n"``), so a newline in a job class name cannot forge a log line, and cut
    at 200 characters.  Every log line showing a value read from Redis passes it through this."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", "backslashreplace")
    else:
        text = value if isinstance(value, str) else str(value)
    if len(text) > _PRINTABLE_MAX_CHARS:
        text = f"{text[:_PRINTABLE_MAX_CHARS]}...({len(text):,} chars)"
    if text.isprintable():  # the usual case, without the regex (this runs on every job's log line)
        return text
    return _CONTROL_RE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def as_bytes(raw):
    """A raw payload read from Redis (``bytes``, or ``str`` from a decoding client) as bytes."""
    return raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "surrogatepass")


def fingerprint(raw):
    """A raw payload named by its size and a hash, never its content (arguments may hold
    personal data), for log lines about bad input: ``"123 bytes, sha256 0123456789ab"``."""
    data = as_bytes(raw)
    return f"{len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()[:12]}"


_JID_FIELD_RE = re.compile(rb'"jid"\s*:\s*"([0-9A-Za-z_\-]{1,64})"')


def jid_in(raw):
    """The jid an unreadable raw payload names, when its text holds exactly one ``"jid": "..."``
    (a nested object in the arguments could hold another); None otherwise."""
    found = {match.group(1) for match in _JID_FIELD_RE.finditer(as_bytes(raw))}
    return found.pop().decode("ascii") if len(found) == 1 else None


def nested_deeper_than(value, limit):
    """True when ``value`` (decoded JSON) nests lists and dicts more than ``limit`` levels deep,
    ``value`` itself counting as level 1.  Iterative: any depth is measured without recursion."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, (list, dict)):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False

