"""django_bgjobs.payload: jids, the JSON encoding, and checks on payloads read back."""

import json
import re

import pytest

from django_bgjobs.errors import InvalidPayloadError
from django_bgjobs.payload import (
    MAX_NESTING_DEPTH,
    dumps,
    fingerprint,
    jid_in,
    loads,
    new_jid,
    printable,
    unscheduled,
    valid_queue_name,
)


def test_jid_is_24_lowercase_hex_chars_and_unique_when_generated():
    jids = {new_jid() for _ in range(10_000)}

    assert len(jids) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{24}", jid) for jid in jids)


def test_dumps_is_compact_and_keeps_the_order_when_encoding():
    raw = dumps({"enqueued_at": 2.5, "class": "A", "args": [1, "x"], "jid": "j"})

    assert raw == '{"enqueued_at":2.5,"class":"A","args":[1,"x"],"jid":"j"}'


def test_unscheduled_drops_at_and_enqueued_at_and_leaves_the_callers_dict_alone():
    payload = {"class": "A", "at": 5.0, "args": [], "enqueued_at": 4.0}

    assert unscheduled(payload) == {"class": "A", "args": []}
    assert list(payload) == ["class", "at", "args", "enqueued_at"]


def test_dumps_refuses_nan_when_a_value_is_not_json():
    with pytest.raises(ValueError):
        dumps({"class": "A", "args": [float("nan")]})


def _nested_payload(levels):
    """A payload ``levels`` deep: its object, its args list, then lists inside lists."""
    return '{"class":"A","args":' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


def test_loads_reads_a_payload_nested_as_deep_as_the_limit():
    assert loads(_nested_payload(MAX_NESTING_DEPTH))["class"] == "A"


@pytest.mark.parametrize("levels", [MAX_NESTING_DEPTH + 1, 950, 100_000])
def test_loads_refuses_a_payload_nested_deeper_than_the_limit_whatever_its_depth(levels):
    with pytest.raises(InvalidPayloadError, match=r"nested deeper than MAX_NESTING_DEPTH \(100\) levels"):
        loads(_nested_payload(levels))


def test_loads_returns_payload_when_bytes_are_a_valid_payload():
    payload = loads(b'{"class":"A","args":[1],"jid":"abc"}')

    assert payload == {"class": "A", "args": [1], "jid": "abc"}


def test_loads_defaults_args_to_empty_list_when_missing():
    assert loads('{"class":"A"}')["args"] == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe", "not UTF-8 text"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "a JSON list, not an object"),
        ('"text"', "a JSON str, not an object"),
        ('{"args": []}', "no 'class' string"),
        ('{"class": 5}', "no 'class' string"),
        ('{"class": ""}', "no 'class' string"),
        ('{"class": "A", "args": {"a": 1}}', "'args' is not a list"),
    ],
    ids=["not-utf8", "bad-json", "list", "string", "no-class", "class-not-str", "class-empty", "args-dict"],
)
def test_loads_raises_invalid_payload_error_with_reason_when_payload_is_broken(raw, message):
    with pytest.raises(InvalidPayloadError, match=message):
        loads(raw)


def test_loads_reads_a_payload_written_by_ruby_sidekiq_when_fields_are_extra():
    # Given: Sidekiq 7's fields, some we do not write
    raw = json.dumps({
        "class": "HardWorker", "args": [1, "x"], "retry": 5, "queue": "default", "jid": "b4a577edbccf1d805744efa9",
        "created_at": 1700000000.1, "enqueued_at": 1700000000.2, "backtrace": True, "tags": ["a"],
    })

    # When
    payload = loads(raw)

    # Then
    assert payload["class"] == "HardWorker" and payload["tags"] == ["a"]


def test_fingerprint_gives_size_and_hash_never_content_when_logging_a_bad_payload():
    assert fingerprint(b"secret") == "6 bytes, sha256 2bb80d537b1d"
    assert fingerprint("secret") == fingerprint(b"secret")
    assert "x" not in fingerprint("x" * 5000).split("sha256")[0]


@pytest.mark.parametrize(("value", "shown"), [
    ("Job\nINFO forged line", "Job\\nINFO forged line"),
    ("a\rb\x1b[31mc\x00", "a\\rb\\x1b[31mc\\x00"),
    ("line\u2028sep\x85", "line\\u2028sep\\x85"),
    (b"raw\n\xff", "raw\\n\\xff"),
    (None, "None"),
    ("tests.testapp.jobs.RecordJob", "tests.testapp.jobs.RecordJob"),
])
def test_printable_escapes_control_characters_so_a_value_cannot_forge_a_log_line(value, shown):
    assert printable(value) == shown


def test_printable_cuts_a_long_value():
    assert printable("x" * 1000) == "x" * 200 + "...(1,000 chars)"


@pytest.mark.parametrize(("raw", "jid"), [
    (b'{"args":["' + b"x" * 100 + b'"], "jid" : "abc123"', "abc123"),
    ('{"jid":"abc","args":[{"jid":"abc"}]', "abc"),
    ('{"jid":"abc","args":[{"jid":"other"}]', None),
    ("no jid here", None),
])
def test_jid_in_finds_the_one_jid_an_unreadable_payload_names(raw, jid):
    assert jid_in(raw) == jid


@pytest.mark.parametrize("name", ["default", "mail.low", "a-b_c", "Q9", "x" * 128, "...", ".hidden"])
def test_queue_name_is_accepted_when_it_uses_allowed_characters(name):
    assert valid_queue_name(name)


@pytest.mark.parametrize(
    "name", ["", "two words", "x" * 129, "queue:x", "ä", "a/b", "new\nline", "default\n", ".", "..", None, 5],
)
def test_queue_name_is_refused_when_it_has_other_characters_or_length(name):
    assert not valid_queue_name(name)
