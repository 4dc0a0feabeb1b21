"""The integration fixture's users and administrator act through kintone's and cybozu's public APIs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import LocalStack

pytestmark = pytest.mark.integration

TEAM_RULES = [
    {
        "filterCond": f'team in ("{team}")',
        "entities": [
            {
                "entity": {"type": "ORGANIZATION", "code": team},
                "viewable": True,
                "editable": True,
                "includeSubs": True,
            },
            {"entity": {"type": "FIELD_ENTITY", "code": "owner"}, "viewable": True, "editable": True},
            {"entity": {"type": "GROUP", "code": "llm-operators"}, "viewable": True, "editable": True},
        ],
    }
    for team in ("platform", "research")
]


@pytest.fixture
def team_permissions(local_stack: LocalStack) -> Iterator[LocalStack]:
    local_stack.set_record_permissions(TEAM_RULES)
    try:
        yield local_stack
    finally:
        local_stack.set_record_permissions([])
        local_stack.move_user("taro", "platform")
        local_stack.deactivate_user("jiro", valid=True)


def test_only_the_team_the_owner_and_operators_read_a_record(team_permissions: LocalStack) -> None:
    stack = team_permissions
    record_id = stack.save_record(user="taro", key_name="permissions", owner=[{"code": "saburo"}])
    for user in ("taro", "hanako", "saburo", "admin"):
        assert stack.read_record_as(user, record_id).status_code == 200, user
    refused = stack.read_record_as("jiro", record_id)
    assert refused.status_code == 403 and refused.json()["code"] == "CB_NO02"
    query = f'$id = "{record_id}"'
    assert stack.query_as("jiro", query).json()["totalCount"] == "0"
    assert stack.query_as("hanako", query).json()["totalCount"] == "1"

    stack.move_user("taro", "research")
    assert stack.read_record_as("taro", record_id).status_code == 403
    stack.deactivate_user("jiro")
    assert stack.read_record_as("jiro", record_id).status_code == 401
