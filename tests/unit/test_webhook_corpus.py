"""A corpus of bad, odd and hostile webhook bodies: never a 5xx, never queued unless well-formed.

Hand-written cases cover each kintone event type with fields missing, extra and of the wrong type,
huge and non-UTF-8 bodies, Japanese and emoji, injection-like values, another app and replays;
hypothesis generates more.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_webhook_handler import (
    TOKEN,
    comment_event,
    deleted_event,
    post,
    queued,
    saved_event,
    webhook_environment,
)

ACCEPTED = {200, 202}
REFUSED = {400, 401, 403, 413}


def without(event: dict, *path: str) -> dict:
    event = copy.deepcopy(event)
    target = event
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return event


def replaced(event: dict, value: Any, *path: str) -> dict:
    event = copy.deepcopy(event)
    target = event
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return event


INJECTIONS = [
    "'; DROP TABLE keys; --",
    '" or 1=1 --',
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "{{7*7}}",
    "../../etc/passwd",
    "\u0000",
    "sk-looks-like-a-key-0000000000",
    "検証用キー 🚀🔑",
    "ｆｕｌｌｗｉｄｔｈ",
    "\u202eevil",
]
WRONG_TYPES = [None, 1, 1.5, True, [], {}, "", " ", "0", "-1", "1e3", "１", "x" * 300]


def hand_written_corpus() -> list[tuple[str, bytes | dict | list, set[int]]]:
    cases: list[tuple[str, bytes | dict | list, set[int]]] = []
    for kind in ("ADD_RECORD", "UPDATE_RECORD", "UPDATE_STATUS"):
        base = saved_event(kind=kind)
        cases.append((f"{kind} valid", base, {202}))
        for field in ("id", "type", "app", "record"):
            cases.append((f"{kind} without {field}", without(base, field), {400}))
        cases.append((f"{kind} without app.id", without(base, "app", "id"), {400}))
        cases.append((f"{kind} without $id", without(base, "record", "$id"), {400}))
        cases.append((f"{kind} extra fields", {**base, "extra": {"nested": [1, 2]}, "signature": "x"}, {202}))
        for value in WRONG_TYPES:
            cases.append((f"{kind} app.id={value!r}", replaced(base, value, "app", "id"), {400}))
            cases.append((f"{kind} $id={value!r}", replaced(base, value, "record", "$id", "value"), {400}))
            valid_notification_id = isinstance(value, str) and 1 <= len(value) <= 256
            cases.append(
                (
                    f"{kind} id={value!r}",
                    replaced(base, value, "id"),
                    {202} if valid_notification_id else {400},
                )
            )
        for text in INJECTIONS:
            cases.append((f"{kind} injection in recordTitle", replaced(base, text, "recordTitle"), {202}))
            cases.append(
                (
                    f"{kind} injection in key_name",
                    replaced(base, {"type": "SINGLE_LINE_TEXT", "value": text}, "record", "key_name"),
                    {202},
                )
            )
            cases.append((f"{kind} injection in $id", replaced(base, text, "record", "$id", "value"), {400}))
        cases.append((f"{kind} other app", replaced(base, "2", "app", "id"), {403}))
    delete = deleted_event()
    cases += [
        ("DELETE valid", delete, {202}),
        ("DELETE deletedBy spelling", {**without(delete, "deleteBy"), "deletedBy": {"code": "x"}}, {202}),
        ("DELETE without deleter", without(delete, "deleteBy"), {202}),
        ("DELETE without recordId", without(delete, "recordId"), {400}),
        ("DELETE numeric recordId", replaced(delete, 5, "recordId"), {400}),
        ("DELETE other app", replaced(delete, "9", "app", "id"), {403}),
        ("DELETE deleter not an object", replaced(delete, "hanako", "deleteBy"), {400}),
    ]
    comment = comment_event()
    cases += [
        ("COMMENT valid", comment, {200}),
        ("COMMENT without recordId", without(comment, "recordId"), {400}),
        ("COMMENT other app", replaced(comment, "3", "app", "id"), {403}),
    ]
    cases += [
        ("empty body", b"", {400}),
        ("null", b"null", {400}),
        ("a number", b"42", {400}),
        ("a string", b'"ADD_RECORD"', {400}),
        ("a list", [saved_event()], {400}),
        ("truncated JSON", json.dumps(saved_event()).encode()[:-5], {400}),
        ("non-UTF-8 bytes", b'{"id": "\xff\xfe", "type": "ADD_RECORD"}', {400}),
        (
            "latin-1 body",
            json.dumps(saved_event()).replace('"my key"', '"caf\u00e9"').encode("latin-1"),
            {202, 400},
        ),
        ("UTF-16 body", json.dumps(saved_event()).encode("utf-16"), {400}),
        ("deeply nested", b"[" * 5000 + b"]" * 5000, {400, 413}),
        ("huge body", {**saved_event(), "recordTitle": "x" * 10_000}, {413}),
        ("huge Japanese body", {**saved_event(), "recordTitle": "鍵" * 2_000}, {413}),
        ("unknown type", replaced(saved_event(), "DELETE_APP", "type"), {400}),
        ("lower-case type", replaced(saved_event(), "add_record", "type"), {400}),
        ("type with a null byte", replaced(saved_event(), "ADD_RECORD\u0000", "type"), {400}),
        (
            "duplicate keys",
            b'{"id":"a","id":"b","type":"ADD_RECORD","app":{"id":"1"},"record":{"$id":{"value":"5"}}}',
            {202},
        ),
    ]
    return cases


CORPUS = hand_written_corpus()


@pytest.fixture(scope="module")
def aws() -> Iterator[str]:
    """One moto world for the corpus: each case drains the queue it checks."""
    with webhook_environment() as queue_url:
        yield queue_url


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 200


@pytest.mark.parametrize(
    ("body", "expected"),
    [(body, expected) for _, body, expected in CORPUS],
    ids=[name for name, _, _ in CORPUS],
)
def test_every_body_gets_a_clear_answer(aws: str, body, expected: set[int]) -> None:
    status, answer = post(body if not isinstance(body, list) else json.dumps(body))
    assert status in expected, answer
    assert answer["message"]
    expected_queued = 1 if answer.get("result") == "queued" else 0
    assert len(queued(aws)) == expected_queued


def test_a_replayed_notification_is_queued_once(aws: str) -> None:
    queued(aws)
    event = saved_event(notification_id="replayed")
    assert [post(event)[0] for _ in range(5)] == [202] * 5
    assert len(queued(aws)) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mutation=st.dictionaries(
        st.sampled_from(["id", "type", "app", "record", "recordId", "deleteBy", "comment", "url"]),
        json_values,
        max_size=4,
    ),
    base=st.sampled_from([saved_event(), deleted_event(), comment_event()]),
)
def test_generated_payloads_never_break_the_handler(aws: str, mutation: dict, base: dict) -> None:
    status, answer = post({**base, **mutation})
    assert status in ACCEPTED | REFUSED, answer
    queued(aws)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2048))
def test_arbitrary_bytes_never_break_the_handler(aws: str, body: bytes) -> None:
    status, answer = post(body)
    assert status in REFUSED | ACCEPTED, answer
    queued(aws)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    token=st.text(min_size=1, max_size=80, alphabet=st.characters(codec="ascii", exclude_characters="/?#%"))
)
def test_no_guessed_token_is_accepted(aws: str, token: str) -> None:
    if token == TOKEN:
        return
    status, _ = post(saved_event(), token=token)
    assert status in (401, 404)
