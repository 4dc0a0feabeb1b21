"""Settings come from the environment; a bad or missing one is named in the error."""

from __future__ import annotations

import json

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
    }


def test_valid_environment_gives_settings_with_defaults() -> None:
    settings = settings_from_environment(valid_environment())
    assert settings.kintone_base_url == "https://example.cybozu.com"
    assert settings.message_language == "ja"
    assert settings.field_codes.api_key == "api_key"
    assert settings.team_catalog.names() == ["platform", "research"]
    assert settings.field_codes.owner == "owner"


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
