"""What the system last made true per record, in DynamoDB (one item per record)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from lambdas.domain.ports import KeyState, RecordRef, TransientError

_THROTTLING_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
}


def partition_key(ref: RecordRef) -> str:
    return f"app#{ref.app_id}#record#{ref.record_id}"


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
        item.pop("pk")
        item["models"] = tuple(item.get("models") or ())
        item["record_revision"] = int(item.get("record_revision", 0))
        item["updated_at"] = float(item.get("updated_at", 0))
        return KeyState.model_validate(item)

    def put(self, state: KeyState) -> None:
        item = state.model_dump(mode="json")
        item["pk"] = partition_key(RecordRef(app_id=state.app_id, record_id=state.record_id))
        item["models"] = list(state.models)
        item["updated_at"] = Decimal(str(state.updated_at))
        try:
            self._table.put_item(Item=item)
        except ClientError as error:
            raise _transient_or_same(error) from None


def _transient_or_same(error: ClientError) -> Exception:
    code = error.response["Error"]["Code"]
    return TransientError(f"DynamoDB: {code}") if code in _THROTTLING_CODES else error
