"""Settings come from the environment; a bad or missing one is named in the error."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from lambdas.domain.settings import SettingsError, settings_from_environment
from lambdas.domain.teams import LOCAL_TEAM_CATALOG


def valid_environment() -> dict[str, str]:
    return {
        "KINTONE_BASE_URL": "https://example.cybozu.com/",
        "KINTONE_APP_ID": "1",
        "KINTONE_API_TOKEN_SECRET_ID": "kintone-token",
        "LITELLM_BASE_URL": "http://litellm.internal",
        "LITELLM_MASTER_KEY_SECRET_ID": "master-key",
        "WEBHOOK_TOKEN_SECRET_ID": "webhook-token",
        "STATE_TABLE_NAME": "state",
        "TEAM_CATALOG": json.dumps(LOCAL_TEAM_CATALOG),
        "CYBOZU_USER_API_TOKEN_SECRET_ID": "cybozu-user-api-token",
    }


def test_valid_environment_gives_settings_with_defaults() -> None:
    settings = settings_from_environment(valid_environment())
    assert settings.kintone_base_url == "https://example.cybozu.com"
    assert settings.message_language == "ja"
    assert settings.field_codes.api_key == "api_key"
    assert settings.team_catalog.names() == ["platform", "research"]
    assert settings.field_codes.owner == "owner"


def test_the_directory_may_be_read_with_a_password_instead_of_a_token() -> None:
    environment = valid_environment()
    del environment["CYBOZU_USER_API_TOKEN_SECRET_ID"]
    environment |= {"CYBOZU_USER_API_LOGIN": "reader", "CYBOZU_USER_API_PASSWORD_SECRET_ID": "reader-pw"}
    settings = settings_from_environment(environment)
    assert (settings.cybozu_user_api_login, settings.cybozu_user_api_password_secret_id) == (
        "reader",
        "reader-pw",
    )


def test_field_codes_are_configurable() -> None:
    settings = settings_from_environment({**valid_environment(), "FIELD_CODES": '{"team": "チーム"}'})
    assert settings.field_codes.team == "チーム"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"KINTONE_APP_ID": None}, "KINTONE_APP_ID is missing"),
        ({"KINTONE_APP_ID": "abc"}, "KINTONE_APP_ID is invalid"),
        ({"TEAM_CATALOG": "{"}, "TEAM_CATALOG is not valid JSON"),
        ({"TEAM_CATALOG": "{}"}, "TEAM_CATALOG is invalid"),
        (
            {"TEAM_CATALOG": '{"bad name!": {"models": ["m"], "members": {"groups": ["g"]}}}'},
            "TEAM_CATALOG is invalid",
        ),
        ({"TEAM_CATALOG": '{"t": {"models": []}}'}, "TEAM_CATALOG[t.models] is invalid"),
        ({"TEAM_CATALOG": '{"t": {"models": ["m"]}}'}, "TEAM_CATALOG[t.members] is missing"),
        (
            {"TEAM_CATALOG": '{"t": {"models": ["m"], "members": {}}}'},
            "TEAM_CATALOG[t.members] is invalid: Value error, name at least one organization or group",
        ),
        (
            {"TEAM_CATALOG": '{"t": {"models": ["m"], "members": {"organizations": [{"code": ""}]}}}'},
            "TEAM_CATALOG[t.members.organizations.0.code] is invalid",
        ),
        (
            {"TEAM_CATALOG": '{"t": {"models": ["m"], "members": {"groups": ["a b"]}}}'},
            "TEAM_CATALOG[t.members.groups] is invalid: Value error, group code 'a b'",
        ),
        (
            {"TEAM_CATALOG": '{"t": {"models": ["m"], "members": {"orgs": ["x"]}}}'},
            "TEAM_CATALOG[t.members.orgs] is invalid",
        ),
        ({"FIELD_CODES": '{"nope": "x"}'}, "FIELD_CODES[nope] is invalid"),
        ({"MESSAGE_LANGUAGE": "fr"}, "MESSAGE_LANGUAGE is invalid"),
        (
            {"CYBOZU_USER_API_TOKEN_SECRET_ID": None},
            "set CYBOZU_USER_API_TOKEN_SECRET_ID, or CYBOZU_USER_API_LOGIN with "
            "CYBOZU_USER_API_PASSWORD_SECRET_ID (one of the two)",
        ),
        ({"CYBOZU_USER_API_LOGIN": "reader"}, "(one of the two)"),
        (
            {"CYBOZU_USER_API_TOKEN_SECRET_ID": None, "CYBOZU_USER_API_LOGIN": "reader"},
            "CYBOZU_USER_API_LOGIN and CYBOZU_USER_API_PASSWORD_SECRET_ID go together",
        ),
        ({"KEY_SECRET_PREFIX": "no-slash"}, "KEY_SECRET_PREFIX is invalid"),
        ({"LITELLM_BASE_URL": "ftp://x"}, "LITELLM_BASE_URL is invalid"),
    ],
)
def test_bad_settings_name_the_variable(change: dict, expected: str) -> None:
    environment = valid_environment()
    for name, value in change.items():
        if value is None:
            environment.pop(name)
        else:
            environment[name] = value
    with pytest.raises(SettingsError, match=None) as error:
        settings_from_environment(environment)
    assert expected in str(error.value)


def test_one_maximum_receive_count_serves_the_worker_the_stack_and_the_local_queue() -> None:
    root = Path(__file__).resolve().parents[2]
    for path in ("lambdas/handlers/worker.py", "stacks/constructs/queue.py", "local/aws_resources.py"):
        tree = ast.parse((root / path).read_text())
        own = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and any(
                isinstance(target, ast.Name) and target.id == "MAX_RECEIVE_COUNT" for target in node.targets
            )
        ]
        imported = [
            node
            for node in tree.body
            if isinstance(node, ast.ImportFrom)
            and node.module == "lambdas.domain.settings"
            and "MAX_RECEIVE_COUNT" in [alias.name for alias in node.names]
        ]
        assert (own, len(imported)) == ([], 1), f"{path} must import MAX_RECEIVE_COUNT, not define its own"
