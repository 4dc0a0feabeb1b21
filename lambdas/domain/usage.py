"""Spend in the record: each issued key's spend, budget and budget reset time, copied from LiteLLM.

kintone budget: LiteLLM is read in pages, and the records' current values are known from the state
store (what the sync last wrote), so kintone is only written to, and only for records whose values
changed, up to 100 records a request. An idle day costs no kintone request at all. The bulk update
fires no webhook and is written without a revision: it touches the usage fields only, so a user's
concurrent edit of other fields is neither refused nor overwritten.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from lambdas.domain.ports import (
    KeyState,
    KeyStatus,
    KeyUsage,
    RecordMissingError,
    RecordRef,
    RecordWrite,
    RecordWriter,
    ShownUsage,
    UsageSource,
    UsageStateStore,
)
from lambdas.domain.provisioning import record_alias
from lambdas.domain.settings import FieldCodes

MAX_RECORDS_PER_WRITE = 100  # kintone's limit for PUT /k/v1/records.json
SPEND_DECIMALS = 4  # 1/10,000 of a currency unit: small enough to show a cheap call


@dataclass(frozen=True)
class SpendSyncConfig:
    app_id: str
    field_codes: FieldCodes
    key_alias_prefix: str


class SpendSyncReport(BaseModel):
    keys_listed: int = 0
    records_written: int = 0
    records_missing: int = 0
    kintone_requests: int = 0


def shown_usage(usage: KeyUsage) -> ShownUsage:
    """LiteLLM's values as kintone field values (NUMBER as a decimal string, DATETIME in UTC)."""
    return ShownUsage(
        spend=_number(round(usage.spend, SPEND_DECIMALS)),
        max_budget="" if usage.max_budget is None else _number(usage.max_budget),
        budget_reset_at=_kintone_datetime(usage.budget_reset_at),
    )


def record_id_of_alias(prefix: str, app_id: str, alias: str) -> str | None:
    """The record whose current key holds `alias`; None for other keys (a rotation's, another app's)."""
    head = record_alias(prefix, RecordRef(app_id=app_id, record_id=""))
    record_id = alias.removeprefix(head) if alias.startswith(head) else ""
    return record_id if record_id.isdigit() and not record_id.startswith("0") else None


class SpendSync:
    def __init__(
        self,
        config: SpendSyncConfig,
        usage: UsageSource,
        records: RecordWriter,
        state_store: UsageStateStore,
    ) -> None:
        self._config = config
        self._usage = usage
        self._records = records
        self._state_store = state_store

    def run(self) -> SpendSyncReport:
        report = SpendSyncReport()
        issued = {
            state.record_id: state
            for state in self._state_store.states_with_status(self._config.app_id, KeyStatus.ISSUED)
        }
        changed: list[tuple[KeyState, ShownUsage]] = []
        alias_head = record_alias(
            self._config.key_alias_prefix, RecordRef(app_id=self._config.app_id, record_id="")
        )
        for usage in self._usage.key_usage(alias_head):
            report.keys_listed += 1
            record_id = record_id_of_alias(
                self._config.key_alias_prefix, self._config.app_id, usage.key_alias
            )
            state = issued.get(record_id or "")
            # Only the key the record holds: during a rotation the alias may briefly name another.
            if state is None or state.key_hash != usage.key_hash:
                continue
            shown = shown_usage(usage)
            if state.usage != shown:
                changed.append((state, shown))
        for start in range(0, len(changed), MAX_RECORDS_PER_WRITE):
            self._write(changed[start : start + MAX_RECORDS_PER_WRITE], report)
        return report

    def _write(self, chunk: Sequence[tuple[KeyState, ShownUsage]], report: SpendSyncReport) -> None:
        writes = [
            RecordWrite(record_id=state.record_id, values=self._values(shown)) for state, shown in chunk
        ]
        report.kintone_requests += 1
        try:
            revisions = self._records.write_records(self._config.app_id, writes)
        except RecordMissingError:
            # A record was deleted since its key was issued (its revoke is on its way). The bulk
            # write is all or nothing, so the others go one by one.
            revisions = {}
            for write in writes:
                report.kintone_requests += 1
                try:
                    revisions.update(self._records.write_records(self._config.app_id, [write]))
                except RecordMissingError:
                    report.records_missing += 1
        for state, shown in chunk:
            if state.record_id in revisions:
                self._state_store.mark_usage_shown(state, shown, revisions[state.record_id])
                report.records_written += 1

    def _values(self, shown: ShownUsage) -> dict[str, str]:
        codes = self._config.field_codes
        return {
            codes.spend: shown.spend,
            codes.max_budget: shown.max_budget,
            codes.budget_reset_at: shown.budget_reset_at,
        }


def _number(value: float) -> str:
    text = f"{value:.{SPEND_DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _kintone_datetime(value: str | None) -> str:
    if not value:
        return ""
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)  # LiteLLM stores UTC
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:00Z")  # kintone keeps minutes
