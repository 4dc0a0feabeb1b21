"""The pipeline's count of its own kintone requests per app and kintone day."""

from __future__ import annotations

import collections

import httpx
import pytest

from lambdas.adapters.kintone_records import KintoneRecords
from lambdas.domain.ports import RecordRef, TransientError
from lambdas.domain.request_budget import RequestMeter, kintone_day
from tests.unit.test_http_adapters import NO_WAIT, StoredCredential

NINE_JST = 1_796_083_200.0  # 2026-12-01T00:00:00Z, 09:00 in Tokyo


class Tally:
    def __init__(self, fail: bool = False) -> None:
        self.totals: collections.Counter[tuple[str, str]] = collections.Counter()
        self.fail = fail

    def add(self, app_id: str, day: str, count: int) -> int:
        if self.fail:
            raise TransientError("DynamoDB: ThrottlingException")
        self.totals[(app_id, day)] += count
        return self.totals[(app_id, day)]


def test_kintones_day_turns_at_nine_in_tokyo() -> None:
    assert kintone_day(NINE_JST - 1) == "2026-11-30"
    assert kintone_day(NINE_JST) == "2026-12-01"


def test_every_request_of_the_adapter_is_counted_for_its_app_failed_ones_too() -> None:
    now = [NINE_JST - 1]
    meter = RequestMeter(clock=lambda: now[0])
    answers = iter(
        [httpx.Response(200, json={"record": {}}), *[httpx.Response(503)] * 3, httpx.Response(200, json={})]
    )
    client = httpx.Client(
        base_url="https://example.cybozu.com", transport=httpx.MockTransport(lambda _request: next(answers))
    )
    records = KintoneRecords(
        "https://example.cybozu.com", StoredCredential("token"), 5, client, NO_WAIT, meter=meter
    )

    records.get_record(RecordRef(app_id="7", record_id="1"))
    with pytest.raises(TransientError):
        records.get_record(RecordRef(app_id="7", record_id="2"))
    now[0] = NINE_JST
    records.add_comment(RecordRef(app_id="7", record_id="1"), "hello", "taro")
    tally = Tally()
    published = meter.publish(tally)

    # The failed read was tried three times: each try is a request kintone counts.
    assert published == {("7", "2026-11-30"): (4, 4), ("7", "2026-12-01"): (1, 1)}


def test_counts_the_tally_could_not_take_wait_for_the_next_invocation() -> None:
    meter = RequestMeter(clock=lambda: NINE_JST)
    for _ in range(3):
        meter.record("7")

    with pytest.raises(TransientError):
        meter.publish(Tally(fail=True))
    meter.record("7")
    tally = Tally()

    assert meter.publish(tally) == {("7", "2026-12-01"): (4, 4)}
    assert meter.publish(tally) == {}
