"""The emulator counts the REST requests it receives per app and per kintone day (from 09:00 JST)."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from local.kintone_emulator import KintoneEmulator
from local.kintone_emulator.request_counter import RequestCounter, app_of, kintone_day
from tests.unit.emulator_directory import READ_TOKEN, bearer, build_directory

TOKEN = "count-token"


def at_jst(*parts: int) -> float:
    return dt.datetime(*parts, tzinfo=dt.timezone(dt.timedelta(hours=9))).timestamp()


@pytest.mark.parametrize(
    ("moment", "day"),
    [
        (at_jst(2026, 11, 30, 9, 0), "2026-11-30"),
        (at_jst(2026, 11, 30, 8, 59), "2026-11-29"),
        (at_jst(2026, 12, 1, 8, 59), "2026-11-30"),
        (at_jst(2027, 1, 1, 0, 30), "2026-12-31"),
    ],
)
def test_a_kintone_day_starts_at_nine_in_japan(moment: float, day: str) -> None:
    assert kintone_day(moment) == day


@pytest.mark.parametrize(
    ("params", "app"),
    [
        ({"app": 3}, "3"),
        ({"app": "3", "id": 9}, "3"),
        ({"id": "4"}, "4"),
        ({"apps": [{"app": 5}]}, "5"),
        ({"apps": ["6"]}, "6"),
        ({}, None),
        ({"app": True}, None),
    ],
)
def test_the_app_a_request_names(params: dict, app: str | None) -> None:
    assert app_of(params) == app


def test_counts_split_at_the_day_boundary() -> None:
    counter = RequestCounter()
    counter.count_kintone("1", "GET /k/v1/record.json", now=at_jst(2026, 11, 30, 8, 59))
    counter.count_kintone("1", "GET /k/v1/record.json", now=at_jst(2026, 11, 30, 9, 0))
    counter.count_kintone("1", "PUT /k/v1/records.json", now=at_jst(2026, 11, 30, 23, 0))
    assert counter.as_json()["apps"]["1"] == {
        "2026-11-29": {"total": 1, "by_api": {"GET /k/v1/record.json": 1}},
        "2026-11-30": {"total": 2, "by_api": {"GET /k/v1/record.json": 1, "PUT /k/v1/records.json": 1}},
    }


def test_the_emulator_counts_every_request_naming_an_app() -> None:
    with (
        KintoneEmulator(app_id="1", api_tokens=[TOKEN], directory=build_directory()) as emulator,
        httpx.Client(base_url=emulator.base_url, headers={"X-Cybozu-API-Token": TOKEN}, timeout=10) as client,
    ):
        client.post("/k/v1/record.json", json={"app": 1, "record": {}})
        client.get("/k/v1/record.json", params={"app": 1, "id": 1})
        client.get("/k/v1/record.json", params={"app": 1, "id": 99})  # an error is a request too
        emulator.add_fault(path_prefix="/k/v1/records.json", status=503)
        client.get("/k/v1/records.json", params={"app": 1})
        client.get("/k/v1/records.json", params={"app": 2})
        client.get("/v1/users.json", headers=bearer(READ_TOKEN))
        counts = client.get("/_emulator/requests").json()
        today = kintone_day(dt.datetime.now(dt.UTC).timestamp())
        assert counts["apps"]["1"][today] == {
            "total": 4,
            "by_api": {"POST /k/v1/record.json": 1, "GET /k/v1/record.json": 2, "GET /k/v1/records.json": 1},
        }
        assert counts["apps"]["2"][today]["total"] == 1
        assert counts["user_api"] == {today: 1}
        emulator.reset()
        assert emulator.request_counts() == {"apps": {}, "user_api": {}}
