"""What the system last made true per record, in DynamoDB (one item per record)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from lambdas.domain.ports import (
    KeyState,
    KeyStatus,
    ReconcilerCursor,
    RecordRef,
    Retirement,
    ShownUsage,
    StateConflictError,
    TransientError,
)

_THROTTLING_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
}


STATUS_INDEX = "by_status"  # partition `status`, sort `updated_at`
# Retirements share the status index: their `updated_at` is the time they fall due, so the due ones
# are one range query away.
RETIRING = "RETIRING"


def partition_key(ref: RecordRef) -> str:
    return f"app#{ref.app_id}#record#{ref.record_id}"


def _retirement_key(ref: RecordRef) -> str:
    return f"retire#{partition_key(ref)}"


class DynamoDBStateStore:
    def __init__(self, table: Any) -> None:
        """`table` is a boto3 DynamoDB Table resource."""
        self._table = table

    def get(self, ref: RecordRef) -> KeyState | None:
        try:
            item = self._table.get_item(Key={"pk": partition_key(ref)}, ConsistentRead=True).get("Item")
        except ClientError as error:
            raise _transient_or_same(error) from None
        if item is None:
            return None
        return _state_of(item)

    def put(self, state: KeyState, expected: KeyState | None) -> KeyState:
        """Store `state` unless another write came after `expected` was read (optimistic locking on
        a version counter; states written before it existed have none and read as version 0)."""
        if expected is None:
            condition = Attr("pk").not_exists()
        elif expected.version == 0:
            condition = Attr("pk").exists() & Attr("version").not_exists()
        else:
            condition = Attr("version").eq(expected.version)
        stored = state.model_copy(update={"version": (expected.version if expected else 0) + 1})
        try:
            self._table.put_item(Item=_item_of(stored), ConditionExpression=condition)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise StateConflictError(
                    f"state of record {state.app_id}:{state.record_id} changed meanwhile"
                ) from None
            raise _transient_or_same(error) from None
        return stored

    def states_with_status(self, app_id: str, status: KeyStatus) -> list[KeyState]:
        items = self._query_index(Key("status").eq(status.value), Attr("app_id").eq(app_id))
        return [_state_of(item) for item in items]

    def mark_usage_shown(self, state: KeyState, usage: ShownUsage, revision: int) -> None:
        key = {"pk": partition_key(RecordRef(app_id=state.app_id, record_id=state.record_id))}
        same_key = Attr("status").eq(KeyStatus.ISSUED.value) & Attr("key_hash").eq(state.key_hash)
        shown = usage.model_dump()
        try:
            self._table.update_item(
                Key=key,
                UpdateExpression="SET #usage = :usage, record_revision = :revision",
                ConditionExpression=same_key & Attr("record_revision").eq(revision - 1),
                ExpressionAttributeNames={"#usage": "usage"},
                ExpressionAttributeValues={":usage": shown, ":revision": revision},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise _transient_or_same(error) from None
            # Someone else wrote to the record too: the reconciler must still look at that change.
        else:
            return
        try:
            self._table.update_item(
                Key=key,
                UpdateExpression="SET #usage = :usage",
                ConditionExpression=same_key,
                ExpressionAttributeNames={"#usage": "usage"},
                ExpressionAttributeValues={":usage": shown},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise _transient_or_same(error) from None
            # The key was revoked or rotated meanwhile; the next sync writes what then holds.

    def get_cursor(self, app_id: str) -> ReconcilerCursor | None:
        item = self._get(f"reconciler#cursor#app#{app_id}")
        return None if item is None else ReconcilerCursor.model_validate(item)

    def put_cursor(self, app_id: str, cursor: ReconcilerCursor) -> None:
        self._put(
            {
                "pk": f"reconciler#cursor#app#{app_id}",
                "last_run_at": Decimal(str(cursor.last_run_at)),
                "last_full_sweep_at": Decimal(str(cursor.last_full_sweep_at)),
            }
        )

    def schedule_retirement(self, retirement: Retirement) -> None:
        self._put(
            {
                "pk": _retirement_key(retirement.ref),
                "status": RETIRING,
                "updated_at": Decimal(str(retirement.due_at)),
                "app_id": retirement.ref.app_id,
                "record_id": retirement.ref.record_id,
                "key_alias": retirement.key_alias,
                "key_hash": retirement.key_hash,
            }
        )

    def due_retirements(self, now: float) -> list[Retirement]:
        items = self._query_index(Key("status").eq(RETIRING) & Key("updated_at").lte(Decimal(str(now))))
        return [
            Retirement(
                ref=RecordRef(app_id=item["app_id"], record_id=item["record_id"]),
                key_alias=item["key_alias"],
                key_hash=item.get("key_hash", ""),
                due_at=float(item["updated_at"]),
            )
            for item in items
        ]

    def clear_retirement(self, retirement: Retirement) -> None:
        try:
            self._table.delete_item(
                Key={"pk": _retirement_key(retirement.ref)},
                ConditionExpression=Attr("updated_at").eq(Decimal(str(retirement.due_at))),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise _transient_or_same(error) from None
            # A later rotation scheduled another retirement meanwhile: it stays.

    def _get(self, pk: str) -> dict[str, Any] | None:
        try:
            return self._table.get_item(Key={"pk": pk}, ConsistentRead=True).get("Item")
        except ClientError as error:
            raise _transient_or_same(error) from None

    def _put(self, item: dict[str, Any]) -> None:
        try:
            self._table.put_item(Item=item)
        except ClientError as error:
            raise _transient_or_same(error) from None

    def _query_index(self, key_condition: Any, filter_expression: Any = None) -> list[dict[str, Any]]:
        request: dict[str, Any] = {"IndexName": STATUS_INDEX, "KeyConditionExpression": key_condition}
        if filter_expression is not None:
            request["FilterExpression"] = filter_expression
        items: list[dict[str, Any]] = []
        while True:
            try:
                page = self._table.query(**request)
            except ClientError as error:
                raise _transient_or_same(error) from None
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _state_of(item: dict[str, Any]) -> KeyState:
    item = dict(item)
    item.pop("pk")
    item["models"] = tuple(item.get("models") or ())
    item["record_revision"] = int(item.get("record_revision", 0))
    item["version"] = int(item.get("version", 0))
    item["updated_at"] = float(item.get("updated_at", 0))
    return KeyState.model_validate(item)


def _transient_or_same(error: ClientError) -> Exception:
    code = error.response["Error"]["Code"]
    return TransientError(f"DynamoDB: {code}") if code in _THROTTLING_CODES else error


def _item_of(state: KeyState) -> dict[str, Any]:
    item = state.model_dump(mode="json")
    item["pk"] = partition_key(RecordRef(app_id=state.app_id, record_id=state.record_id))
    item["models"] = list(state.models)
    item["updated_at"] = Decimal(str(state.updated_at))
    return item


class DynamoDBAlertClaims:
    """One item per alert sent, in the state table; DynamoDB's TTL removes it when it may repeat."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def claim(self, alert_id: str, expires_at: float) -> bool:
        try:
            self._table.put_item(
                Item={"pk": f"alert#{alert_id}", "expires_at": int(expires_at)},
                # TTL deletes within days of expiry, not at once: an expired claim counts as free.
                ConditionExpression=Attr("pk").not_exists() | Attr("expires_at").lt(int(time.time())),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise _transient_or_same(error) from None
        return True

    def release(self, alert_id: str) -> None:
        try:
            self._table.delete_item(Key={"pk": f"alert#{alert_id}"})
        except ClientError as error:
            raise _transient_or_same(error) from None


class DynamoDBRequestTally:
    """Each app's kintone requests per day, one item per app and day, added to atomically."""

    KEEP_SECONDS = 3 * 86_400

    def __init__(self, table: Any) -> None:
        self._table = table

    def add(self, app_id: str, day: str, count: int) -> int:
        try:
            updated = self._table.update_item(
                Key={"pk": f"kintone-requests#app#{app_id}#day#{day}"},
                UpdateExpression="ADD requests :count SET expires_at = if_not_exists(expires_at, :expires)",
                ExpressionAttributeValues={":count": count, ":expires": int(time.time()) + self.KEEP_SECONDS},
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as error:
            raise _transient_or_same(error) from None
        return int(updated["Attributes"]["requests"])

    def total(self, app_id: str, day: str) -> int:
        try:
            item = self._table.get_item(
                Key={"pk": f"kintone-requests#app#{app_id}#day#{day}"}, ConsistentRead=True
            ).get("Item")
        except ClientError as error:
            raise _transient_or_same(error) from None
        return int(item["requests"]) if item else 0
