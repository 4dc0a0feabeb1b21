"""kintone webhook payloads and the work item the webhook hands to the worker.

kintone webhooks are unsigned, so a parsed event is only a hint: the worker re-reads the record
before acting on it. All ids arrive as strings.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

KintoneId = Annotated[str, StringConstraints(strict=True, pattern=r"^[1-9][0-9]{0,18}$")]
NotificationId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]


class _Event(BaseModel):
    # kintone may add payload fields at any time; unknown ones are ignored, known ones are checked.
    model_config = ConfigDict(extra="ignore", frozen=True)


class WebhookApp(_Event):
    id: KintoneId
    name: str = ""


class WebhookUser(_Event):
    code: Annotated[str, StringConstraints(strict=True, max_length=128)] = ""
    name: str = ""


class RecordIdField(_Event):
    value: KintoneId


class WebhookRecord(_Event):
    """Only `$id` matters: every other field is re-read from kintone."""

    id: RecordIdField = Field(alias="$id")


class RecordSavedEvent(_Event):
    id: NotificationId
    type: Literal["ADD_RECORD", "UPDATE_RECORD", "UPDATE_STATUS"]
    app: WebhookApp
    record: WebhookRecord

    @property
    def record_id(self) -> str:
        return self.record.id.value


class RecordDeletedEvent(_Event):
    id: NotificationId
    type: Literal["DELETE_RECORD"]
    app: WebhookApp
    recordId: KintoneId
    deleted_by: WebhookUser = Field(
        default=WebhookUser(), validation_alias=AliasChoices("deleteBy", "deletedBy")
    )

    @property
    def record_id(self) -> str:
        return self.recordId


class CommentAddedEvent(_Event):
    id: NotificationId
    type: Literal["ADD_RECORD_COMMENT"]
    app: WebhookApp
    recordId: KintoneId

    @property
    def record_id(self) -> str:
        return self.recordId


WebhookEvent = Annotated[
    RecordSavedEvent | RecordDeletedEvent | CommentAddedEvent, Field(discriminator="type")
]
webhook_event_adapter: TypeAdapter[WebhookEvent] = TypeAdapter(WebhookEvent)


# OFFBOARD: a sweep found the key's owner gone from the directory or their team; the worker confirms.
Trigger = Literal[
    "ADD_RECORD",
    "UPDATE_RECORD",
    "UPDATE_STATUS",
    "DELETE_RECORD",
    "ADD_RECORD_COMMENT",
    "RECONCILE",
    "OFFBOARD",
]


class WorkItem(BaseModel):
    """What the worker is asked to converge: one record, and why it was asked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_id: KintoneId
    record_id: KintoneId
    trigger: Trigger
    received_at: float = Field(description="epoch seconds when the hint arrived, for time-to-key")
    reported_actor: str = Field(default="", description="user named by the webhook; unverified")
    attempts: int = Field(
        default=0, ge=0, description="failed attempts in earlier messages, when the worker re-queued it"
    )
    last_error: str = Field(default="", max_length=500, description="why the last attempt failed")

    @property
    def message_group_id(self) -> str:
        return f"{self.app_id}:{self.record_id}"
