"""Every domain service on the same in-memory fakes, with a clock the test moves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lambdas.domain.membership import Memberships
from lambdas.domain.ports import RecordRef
from lambdas.domain.provisioning import KeyProvisioner, Outcome, ProvisioningConfig
from lambdas.domain.reconciliation import Reconciler, ReconcilerConfig
from lambdas.domain.rotation import KeyRotator, RotationConfig, RotationStep
from lambdas.domain.settings import FieldCodes
from lambdas.domain.teams import LOCAL_TEAM_CATALOG, TeamCatalog
from lambdas.domain.webhook_events import WorkItem
from tests.unit.fakes import (
    CrashPoints,
    FakeDirectory,
    FakeGateway,
    FakeKeyStore,
    FakeQueue,
    FakeRecords,
    FakeStateStore,
    kintone_record,
)

CATALOG = TeamCatalog.model_validate(LOCAL_TEAM_CATALOG)
APP = "7"
GRACE = 3600
STEPS = list(RotationStep)


class World:
    """Every domain service on the same fakes, with a clock the test moves."""

    def __init__(
        self,
        *,
        max_revoke_share: float = 0.2,
        mass_revoke_floor: int = 2,
        test_model: str | None = None,
        port: Callable[[str, Any], Any] = lambda _name, fake: fake,
    ) -> None:
        """`port(name, fake)` is what the services get for each fake (the schedule explorer wraps
        them so that every call a service makes to a port is a step it can schedule)."""
        self.now = 1_700_000_000.0
        self.crashes = CrashPoints()
        self.records = FakeRecords(self.crashes)
        self.gateway = FakeGateway(self.crashes)
        self.key_store = FakeKeyStore(self.crashes)
        self.state_store = FakeStateStore()
        self.queue = FakeQueue()
        # Not a scheduled port: the directory is only read, and nothing here changes it mid-schedule.
        self.directory = FakeDirectory()
        memberships = Memberships(self.directory)
        codes = FieldCodes()
        records, gateway = port("kintone", self.records), port("litellm", self.gateway)
        key_store, state_store = port("secrets", self.key_store), port("dynamodb", self.state_store)
        self.provisioner = KeyProvisioner(
            ProvisioningConfig(
                team_catalog=CATALOG,
                field_codes=codes,
                language="en",
                key_alias_prefix="kintone",
                kintone_base_url="https://example.cybozu.com",
            ),
            records,
            gateway,
            key_store,
            state_store,
            clock=lambda: self.now,
            rotations=key_store,
            memberships=memberships,
        )
        self.rotator = KeyRotator(
            RotationConfig(
                field_codes=codes,
                language="en",
                key_alias_prefix="kintone",
                grace_seconds=GRACE,
                test_model=test_model,
            ),
            key_store,
            gateway,
            records,
            state_store,
            clock=lambda: self.now,
        )
        self.reconciler = Reconciler(
            ReconcilerConfig(
                app_id=APP,
                field_codes=codes,
                lookback_seconds=60,
                full_sweep_seconds=600,
                max_revoke_share=max_revoke_share,
                mass_revoke_floor=mass_revoke_floor,
                team_catalog=CATALOG,
            ),
            records,
            state_store,
            port("sqs", self.queue),
            gateway,
            clock=lambda: self.now,
            memberships=memberships,
        )

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.records.now = self.now

    def converge(self, ref: RecordRef, trigger: str = "UPDATE_RECORD"):
        item = WorkItem(app_id=ref.app_id, record_id=ref.record_id, trigger=trigger, received_at=0.0)
        return self.provisioner.converge(item)

    def drain(self) -> list[Outcome]:
        """The worker handling everything queued so far."""
        return [self.provisioner.converge(item).outcome for item in self.queue.take()]

    def issued(self, record_id: str = "1") -> RecordRef:
        ref = self.records.add(APP, kintone_record(record_id))
        assert self.converge(ref, "ADD_RECORD").outcome == Outcome.ISSUED
        return ref

    def rotate(self, ref: RecordRef, steps: list[RotationStep] = STEPS) -> None:
        secret_id = f"keys/app-{ref.app_id}/record-{ref.record_id}"
        for step in steps:
            self.rotator.run(secret_id, "request-token-1", step)
