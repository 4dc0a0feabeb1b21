"""Keys only for active members of their team: issuing checks the owner, sweeps offboard leavers.

The directory is the fake (tests/test_directory_contract.py holds it to the real User API's answers):
platform = taro, hanako (platform-sre under it); research = jiro; saburo in no team; admin in the
group llm-operators.
"""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.domain.membership import Memberships, Standing
from lambdas.domain.ports import DirectoryError, KeyStatus, RecordRef, TransientError
from lambdas.domain.provisioning import Outcome
from lambdas.domain.teams import TeamMembers
from tests.unit.fakes import FakeDirectory, kintone_record
from tests.unit.test_provisioning import World as ProvisioningWorld
from tests.unit.world import APP, World


def record(record_id: str, creator: str = "taro", owners: list[str] | None = None, **fields: Any) -> dict:
    saved = kintone_record(record_id, **fields)
    saved["作成者"]["value"] = {"code": creator, "name": creator.title()}
    if owners is not None:
        saved["owner"] = {"type": "USER_SELECT", "value": [{"code": code, "name": code} for code in owners]}
    return saved


@pytest.fixture
def world() -> World:
    return World(mass_revoke_floor=2, max_revoke_share=0.5)


def issued(world: World, record_id: str, creator: str = "taro") -> RecordRef:
    ref = world.records.add(APP, record(record_id, creator))
    assert world.converge(ref, "ADD_RECORD").outcome == Outcome.ISSUED
    return ref


def sweep_and_work(world: World) -> list[Outcome]:
    world.advance(60)
    world.reconciler.run()
    return world.drain()


def nothing_made(world: World, ref: RecordRef) -> bool:
    secret = f"keys/app-{ref.app_id}/record-{ref.record_id}"
    return not world.gateway.keys and secret not in world.key_store.secrets


# -- issuing -----------------------------------------------------------------------------------------


def test_a_member_of_the_team_gets_a_key_and_is_its_owner(world: World) -> None:
    ref = issued(world, "1", creator="hanako")
    assert world.state_store.get(ref).owner == "hanako"


@pytest.mark.parametrize(
    ("creator", "reason"),
    [
        ("jiro", "not a member of the team"),  # in research only
        ("saburo", "not a member of the team"),  # in no team
        ("nobody", "no such cybozu.com user"),
    ],
)
def test_someone_outside_the_team_gets_no_key_and_is_told_who_may(
    world: World, creator: str, reason: str
) -> None:
    ref = world.records.add(APP, record("1", creator))

    assert world.converge(ref, "ADD_RECORD").outcome == Outcome.FAILED

    assert world.records.value(ref, "status") == "Failed"
    assert world.records.value(ref, "message") == (
        f"{creator} may not hold a key of team 'platform' ({reason}). "
        "Only active members of organization platform may."
    )
    assert nothing_made(world, ref)


def test_a_deactivated_member_gets_no_key(world: World) -> None:
    world.directory.deactivate("taro")
    ref = world.records.add(APP, record("1"))

    assert world.converge(ref, "ADD_RECORD").outcome == Outcome.FAILED
    assert "(the user is deactivated)" in world.records.value(ref, "message")
    assert nothing_made(world, ref)


def test_the_message_is_japanese_by_default() -> None:
    world = ProvisioningWorld(language="ja")
    ref = world.records.add(APP, record("1", "jiro"))
    world.converge(ref)
    assert world.records.value(ref, "message") == (
        "jiro はチーム 'platform' のキーを持てません（チームのメンバーではありません）。"
        "持てるのは 組織 platform に所属する有効なユーザーです。"
    )


def test_a_record_added_with_an_api_token_belongs_to_nobody(world: World) -> None:
    world.directory.valid["Administrator"] = True  # even were there a user of that name
    world.directory.move("Administrator", ["platform"])
    ref = world.records.add(APP, record("1", "Administrator"))

    assert world.converge(ref, "ADD_RECORD").outcome == Outcome.FAILED
    assert "Administrator may not hold a key of team 'platform'" in world.records.value(ref, "message")
    assert nothing_made(world, ref)


def test_a_lead_registers_a_key_for_a_teammate_who_then_owns_it(world: World) -> None:
    ref = world.records.add(APP, record("1", "jiro", owners=["hanako"]))

    assert world.converge(ref, "ADD_RECORD").outcome == Outcome.ISSUED
    assert world.state_store.get(ref).owner == "hanako"


def test_the_owner_field_names_someone_outside_the_team(world: World) -> None:
    ref = world.records.add(APP, record("1", "taro", owners=["saburo"]))

    assert world.converge(ref, "ADD_RECORD").outcome == Outcome.FAILED
    assert world.records.value(ref, "message").startswith("saburo may not hold a key of team 'platform'")
    assert nothing_made(world, ref)


def test_the_owner_field_must_name_one_user(world: World) -> None:
    ref = world.records.add(APP, record("1", owners=["taro", "hanako"]))

    assert world.converge(ref, "ADD_RECORD").outcome == Outcome.FAILED
    assert (
        world.records.value(ref, "message")
        == "Choose exactly one user in 'owner', the one who holds the key."
    )
    assert nothing_made(world, ref)


def test_moving_a_key_to_a_team_the_owner_is_not_in_is_refused_and_the_key_stays(world: World) -> None:
    ref = issued(world, "1")
    api_key = world.records.value(ref, "api_key")

    world.records.edit(ref, team="research")
    assert world.converge(ref).outcome == Outcome.FAILED

    assert world.records.value(ref, "status") == "Failed"
    assert "taro may not hold a key of team 'research'" in world.records.value(ref, "message")
    assert world.gateway.keys["kintone-7-1"].team_id == "platform"
    assert world.gateway.working_keys() == {api_key}
    assert world.state_store.get(ref).team == "platform"


def test_handing_an_issued_key_to_another_owner_checks_them(world: World) -> None:
    ref = issued(world, "1")
    owner_field = {"type": "USER_SELECT", "value": [{"code": "jiro", "name": "Jiro"}]}
    world.records.records[(APP, "1")]["owner"] = owner_field
    world.records.edit(ref)

    assert world.converge(ref).outcome == Outcome.FAILED
    assert world.state_store.get(ref).owner == "taro"

    owner_field["value"] = [{"code": "hanako", "name": "Hanako"}]
    world.records.edit(ref)
    assert world.converge(ref).outcome == Outcome.UPDATED
    assert world.records.value(ref, "message") == "Updated the key: owner: taro → hanako."
    assert world.records.value(ref, "status") == "Issued"
    assert world.state_store.get(ref).owner == "hanako"


def test_a_directory_fault_while_issuing_makes_nothing_and_is_retried(world: World) -> None:
    world.directory.failure = TransientError("cybozu GET /v1/users.json answered 503")
    ref = world.records.add(APP, record("1"))

    with pytest.raises(TransientError):
        world.converge(ref, "ADD_RECORD")
    assert nothing_made(world, ref)

    world.directory.failure = None
    assert world.converge(ref, "ADD_RECORD").outcome == Outcome.ISSUED


def test_an_issued_key_is_not_checked_again_on_every_save(world: World) -> None:
    ref = issued(world, "1")
    reads = world.directory.reads
    world.records.edit(ref, key_name="renamed")

    assert world.converge(ref).outcome == Outcome.UPDATED
    assert world.directory.reads == reads


# -- who is a member -------------------------------------------------------------------------------


def members(**value: Any) -> TeamMembers:
    return TeamMembers.model_validate(value)


def test_sub_organizations_count_only_when_the_catalog_says_so() -> None:
    directory = FakeDirectory()
    directory.move("hanako", ["platform-sre"])
    memberships = Memberships(directory)

    assert (
        memberships.standing("hanako", members(organizations=[{"code": "platform"}])) == Standing.NOT_MEMBER
    )
    with_subs = members(organizations=[{"code": "platform", "include_subs": True}])
    assert memberships.standing("hanako", with_subs) == Standing.MEMBER
    assert memberships.rosters().members(with_subs) == {"taro": True, "hanako": True}


def test_group_members_may_hold_keys() -> None:
    memberships = Memberships(FakeDirectory())
    operators = members(organizations=[{"code": "research"}], groups=["llm-operators"])

    assert memberships.standing("admin", operators) == Standing.MEMBER
    assert memberships.standing("jiro", operators) == Standing.MEMBER
    assert memberships.standing("taro", operators) == Standing.NOT_MEMBER


def test_the_organization_tree_is_read_once_for_a_while() -> None:
    directory = FakeDirectory()
    directory.move("hanako", ["platform-sre"])
    now = [0.0]
    memberships = Memberships(directory, clock=lambda: now[0])
    with_subs = members(organizations=[{"code": "platform", "include_subs": True}])

    memberships.standing("hanako", with_subs)
    reads = directory.reads
    memberships.standing("hanako", with_subs)
    assert directory.reads == reads + 2  # the user and their organizations, not the tree again

    now[0] += 301
    memberships.standing("hanako", with_subs)
    assert directory.reads == reads + 5


# -- offboarding -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leave", "reason"),
    [
        (lambda directory: directory.deactivate("hanako"), "the user is deactivated"),
        (lambda directory: directory.delete("hanako"), "no such cybozu.com user"),
        (lambda directory: directory.move("hanako", ["research"]), "not a member of the team"),
    ],
)
def test_an_owner_who_leaves_loses_the_key_at_the_next_sweep(world: World, leave, reason: str) -> None:
    kept = issued(world, "1")
    ref = issued(world, "2", creator="hanako")
    api_key = world.records.value(ref, "api_key")

    leave(world.directory)
    assert sweep_and_work(world) == [Outcome.REVOKED]

    assert world.records.value(ref, "status") == "Revoked"
    assert world.records.value(ref, "api_key") == ""
    assert world.records.value(ref, "message") == (
        f"The key was revoked: hanako may no longer hold a key of team 'platform' ({reason}). "
        "Only active members of organization platform may."
    )
    assert api_key not in world.gateway.working_keys()
    assert "keys/app-7/record-2" in world.key_store.scheduled_for_deletion
    assert world.state_store.get(ref).status == KeyStatus.REVOKED
    assert world.records.comments[-1][1:] == ("Your key has been revoked.", "hanako")
    assert world.records.value(kept, "status") == "Issued"


def test_a_later_delivery_leaves_an_offboarded_record_as_it_is(world: World) -> None:
    """Found by the schedule explorer: a save's delivery after the offboarding rewrote the reason
    to a plain "revoked" and told the requester a second time."""
    ref = issued(world, "1", creator="hanako")
    world.directory.deactivate("hanako")
    assert sweep_and_work(world) == [Outcome.REVOKED]
    message, writes, comments = (
        world.records.value(ref, "message"),
        len(world.records.writes),
        len(world.records.comments),
    )

    assert world.converge(ref).outcome == Outcome.REVOKED

    assert world.records.value(ref, "message") == message
    assert (len(world.records.writes), len(world.records.comments)) == (writes, comments)


def test_a_directory_that_fails_during_a_sweep_offboards_nobody(world: World) -> None:
    ref = issued(world, "1", creator="hanako")
    world.directory.delete("hanako")
    world.directory.failure = TransientError("cybozu GET /v1/organization/users.json answered 503")

    world.advance(60)
    report = world.reconciler.run()

    assert report.owner_check_failed is True
    assert world.drain() == []
    assert world.records.value(ref, "status") == "Issued"


def test_a_refusing_directory_offboards_nobody_either(world: World) -> None:
    issued(world, "1")
    world.directory.failure = DirectoryError("cybozu GET /v1/organization/users.json answered 401 CB_WA01")

    world.advance(60)
    assert world.reconciler.run().owner_check_failed is True
    assert world.drain() == []


def test_an_owner_the_member_list_missed_keeps_the_key(world: World) -> None:
    """A list read while people move can miss someone: the worker asks about the owner alone."""
    ref = issued(world, "1")
    listed = world.directory.organization_members
    world.directory.organization_members = lambda code: [u for u in listed(code) if u.code != "taro"]

    assert sweep_and_work(world) == [Outcome.UNCHANGED]
    assert world.records.value(ref, "status") == "Issued"


def test_a_fault_when_confirming_revokes_nothing_and_is_retried(world: World) -> None:
    ref = issued(world, "1")
    world.directory.deactivate("taro")
    world.advance(60)
    world.reconciler.run()
    [item] = world.queue.take()
    world.directory.failure = TransientError("cybozu GET /v1/users.json timed out")

    with pytest.raises(TransientError):
        world.provisioner.converge(item)
    assert world.records.value(ref, "status") == "Issued"

    world.directory.failure = None
    assert world.provisioner.converge(item).outcome == Outcome.REVOKED


def test_more_owners_leaving_at_once_than_the_guard_allows_revokes_nothing(world: World) -> None:
    refs = [issued(world, str(number), creator="hanako") for number in range(1, 5)]
    issued(world, "5")
    world.directory.delete("hanako")  # 4 of 5 keys: above the floor (2) and the share (0.5)

    world.advance(60)
    report = world.reconciler.run()

    assert (report.mass_revoke_blocked, report.owners_left, report.issued_keys) == (True, 4, 5)
    assert world.drain() == []
    assert all(world.records.value(ref, "status") == "Issued" for ref in refs)

    world.reconciler.run(allow_mass_revoke=True)  # an operator checked and allows it
    assert world.drain() == [Outcome.REVOKED] * 4


def test_owners_and_missing_records_count_together_against_the_guard(world: World) -> None:
    issued(world, "1", creator="hanako")
    issued(world, "2", creator="hanako")
    gone = issued(world, "3")
    issued(world, "4")
    world.directory.deactivate("hanako")
    world.records.delete(gone)

    world.advance(60)
    report = world.reconciler.run()

    assert (report.owners_left, report.missing_records, report.mass_revoke_blocked) == (2, 1, True)
