"""The kintone and LiteLLM clients against scripted HTTP answers (shapes taken from the real services)."""

from __future__ import annotations

import json

import httpx
import pytest

from lambdas.adapters.kintone_records import KintoneError, KintoneRecords
from lambdas.adapters.litellm_keys import LiteLLMError, LiteLLMKeyGateway
from lambdas.adapters.retries import RetryPolicy, set_invocation_deadline
from lambdas.domain.key_request import key_hash
from lambdas.domain.ports import KeyChange, KeySpec, RecordRef, RevisionConflictError, TransientError
from lambdas.domain.teams import TeamMembers, TeamPolicy

REF = RecordRef(app_id="1", record_id="5")
API_KEY = "sk-test-abcdefghijklmnopqrstuvwxyz"
SPEC = KeySpec(
    api_key=API_KEY, alias="kintone-1-5", team_id="platform", models=("fake-gpt",), metadata={"k": "v"}
)


def scripted(*answers: httpx.Response | Exception):
    """A transport that answers in order and records the requests."""
    requests: list[httpx.Request] = []
    pending = list(answers)

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        reply = pending.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return httpx.MockTransport(answer), requests


def kintone_error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "id": "abc", "message": "message from kintone"})


def litellm_error(status: int, error_type: str, param: str | None, message: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"message": message, "type": error_type, "param": param, "code": str(status)}}
    )


class StoredCredential:
    """A secret as the adapters see it through the cache: `rotate` changes what a fresh read gets."""

    def __init__(self, value: str) -> None:
        self.cached = self.stored = value
        self.fresh_reads = 0

    def rotate(self, value: str) -> None:
        self.stored = value

    def current(self) -> str:
        return self.cached

    def refreshed(self) -> str:
        self.fresh_reads += 1
        self.cached = self.stored
        return self.cached


NO_WAIT = RetryPolicy(base_seconds=0)


def kintone(*answers, token: StoredCredential | None = None) -> tuple[KintoneRecords, list[httpx.Request]]:
    transport, requests = scripted(*answers)
    client = httpx.Client(base_url="https://example.cybozu.com", transport=transport)
    credential = token or StoredCredential("token")
    return KintoneRecords("https://example.cybozu.com", credential, 5, client, NO_WAIT), requests


def litellm(
    *answers, master_key: StoredCredential | None = None
) -> tuple[LiteLLMKeyGateway, list[httpx.Request]]:
    transport, requests = scripted(*answers)
    client = httpx.Client(base_url="http://litellm", transport=transport)
    credential = master_key or StoredCredential("sk-master-xyz")
    return LiteLLMKeyGateway("http://litellm", credential, 5, client, NO_WAIT), requests


# -- kintone ---------------------------------------------------------------------------------------


def test_get_record_returns_none_for_a_missing_record() -> None:
    records, _ = kintone(kintone_error(404, "GAIA_RE01"))
    assert records.get_record(REF) is None


def test_write_back_uses_the_bulk_api_with_the_revision() -> None:
    records, requests = kintone(httpx.Response(200, json={"records": [{"id": "5", "revision": "8"}]}))
    assert records.write_fields(REF, 7, {"status": "Issued"}) == 8
    [request] = requests
    assert (request.method, request.url.path) == ("PUT", "/k/v1/records.json")
    assert json.loads(request.content) == {
        "app": "1",
        "records": [{"id": "5", "revision": "7", "record": {"status": {"value": "Issued"}}}],
    }


def test_a_revision_mismatch_is_a_conflict() -> None:
    records, _ = kintone(kintone_error(409, "GAIA_CO02"))
    with pytest.raises(RevisionConflictError):
        records.write_fields(REF, 7, {"status": "Issued"})


@pytest.mark.parametrize(
    "answer",
    [kintone_error(429, "GAIA_TM12"), kintone_error(503, "CB_IJ01"), httpx.ConnectTimeout("slow")],
)
def test_overload_outages_and_timeouts_are_transient_after_three_tries(answer) -> None:
    records, requests = kintone(answer, answer, answer)
    with pytest.raises(TransientError):
        records.get_record(REF)
    assert len(requests) == 3


def test_a_transient_fault_is_retried_inside_the_call() -> None:
    found = httpx.Response(200, json={"record": {"$id": {"value": "5"}}})
    records, requests = kintone(kintone_error(503, "CB_IJ01"), httpx.ReadTimeout("slow"), found)
    assert records.get_record(REF) == {"$id": {"value": "5"}}
    assert len(requests) == 3


def test_retries_stop_when_the_invocation_cannot_afford_another_try() -> None:
    records, requests = kintone(kintone_error(503, "CB_IJ01"), kintone_error(503, "CB_IJ01"))
    set_invocation_deadline(4.9)  # less than one more 5 s timeout
    try:
        with pytest.raises(TransientError):
            records.get_record(REF)
    finally:
        set_invocation_deadline(None)
    assert len(requests) == 1


@pytest.mark.parametrize(
    ("answer", "tries"),
    [
        (httpx.ReadTimeout("maybe posted"), 1),
        (kintone_error(500, "CB_IJ01"), 1),
        (kintone_error(429, "x"), 3),
    ],
)
def test_a_comment_is_repeated_only_when_it_surely_was_not_posted(answer, tries: int) -> None:
    records, requests = kintone(answer, answer, answer)
    with pytest.raises(TransientError):
        records.add_comment(REF, "issued", "taro")
    assert len(requests) == tries


@pytest.mark.parametrize(
    "refusal",
    [kintone_error(400, "GAIA_IA02"), kintone_error(401, "CB_AU01"), kintone_error(403, "GAIA_NO01")],
)
def test_a_rotated_api_token_is_read_again_and_the_call_repeated(refusal: httpx.Response) -> None:
    token = StoredCredential("old-token")
    found = httpx.Response(200, json={"record": {"$id": {"value": "5"}}})
    records, requests = kintone(httpx.Response(200, json={"record": {}}), refusal, found, token=token)
    records.get_record(REF)
    token.rotate("new-token")
    assert records.get_record(REF) == {"$id": {"value": "5"}}
    assert [request.headers["X-Cybozu-API-Token"] for request in requests] == [
        "old-token",
        "old-token",
        "new-token",
    ]
    assert token.fresh_reads == 1


def test_a_refused_token_that_was_not_rotated_is_not_retried() -> None:
    token = StoredCredential("token")
    records, requests = kintone(kintone_error(400, "GAIA_IA02"), token=token)
    with pytest.raises(KintoneError, match="GAIA_IA02"):
        records.get_record(REF)
    assert (len(requests), token.fresh_reads) == (1, 1)


def test_other_refusals_are_permanent_with_kintone_code() -> None:
    records, _ = kintone(kintone_error(403, "GAIA_NO01"))
    with pytest.raises(KintoneError, match="GAIA_NO01"):
        records.get_record(REF)


# -- LiteLLM ---------------------------------------------------------------------------------------

PLATFORM_MEMBERS = TeamMembers.model_validate({"organizations": [{"code": "platform"}]})


def test_ensure_team_creates_a_missing_team_once() -> None:
    gateway, requests = litellm(httpx.Response(200, json={"team_id": "platform"}))
    policy = TeamPolicy(models=("fake-gpt",), members=PLATFORM_MEMBERS, max_budget=10.0)
    gateway.ensure_team("platform", policy)
    gateway.ensure_team("platform", policy)  # cached: no more requests
    assert [request.url.path for request in requests] == ["/team/new"]
    assert json.loads(requests[0].content) == {
        "team_id": "platform",
        "team_alias": "platform",
        "models": ["fake-gpt"],
        "max_budget": 10.0,
    }


def team_exists() -> httpx.Response:
    message = "{'error': 'Team id = platform already exists.'}"
    return litellm_error(400, "internal_server_error", None, message)


def listed_team(**fields) -> httpx.Response:
    team = {"team_id": "platform", "models": ["fake-gpt"], "max_budget": None, "budget_duration": None}
    return httpx.Response(200, json={"teams": [team | fields], "total": 1, "page": 1})


def test_ensure_team_accepts_a_team_that_exists_and_matches_the_catalog() -> None:
    gateway, requests = litellm(team_exists(), listed_team(models=["fake-gpt"]))
    gateway.ensure_team("platform", TeamPolicy(models=("fake-gpt",), members=PLATFORM_MEMBERS))
    assert [request.url.path for request in requests] == ["/team/new", "/v2/team/list"]


def test_a_changed_catalog_reaches_an_existing_team_with_only_what_differs() -> None:
    gateway, requests = litellm(
        team_exists(),
        listed_team(models=["fake-gpt"], max_budget=100.0, budget_duration="30d", rpm_limit=60),
        httpx.Response(200, json={"team_id": "platform"}),
    )
    policy = TeamPolicy(
        models=("fake-gpt", "other-model"), max_budget=250.0, budget_duration="30d", members=PLATFORM_MEMBERS
    )
    gateway.ensure_team("platform", policy)
    gateway.ensure_team("platform", policy)  # cached: no more requests

    assert [request.url.path for request in requests] == ["/team/new", "/v2/team/list", "/team/update"]
    # The unchanged budget_duration is left out: sent again, it would restart the budget period.
    assert json.loads(requests[2].content) == {
        "team_id": "platform",
        "models": ["fake-gpt", "other-model"],
        "max_budget": 250.0,
        "rpm_limit": None,  # the catalog dropped the limit: null unsets it
    }


def test_ensure_team_reports_other_refusals() -> None:
    gateway, _ = litellm(litellm_error(400, "bad_request_error", "models", "unknown model"))
    with pytest.raises(LiteLLMError, match="unknown model"):
        gateway.ensure_team("platform", TeamPolicy(models=("nope",), members=PLATFORM_MEMBERS))


def test_create_key_removes_an_orphan_holding_the_alias() -> None:
    gateway, requests = litellm(
        litellm_error(400, "bad_request_error", "key_alias", "Key with alias 'kintone-1-5' already exists."),
        httpx.Response(200, json={"deleted_keys": ["kintone-1-5"]}),
        httpx.Response(200, json={"key": API_KEY}),
    )
    gateway.create_key(SPEC)
    assert [request.url.path for request in requests] == ["/key/generate", "/key/delete", "/key/generate"]
    assert json.loads(requests[1].content) == {"key_aliases": ["kintone-1-5"]}


def test_upsert_looks_the_key_up_by_hash_and_updates_what_differs() -> None:
    info = {"key_alias": "kintone-1-5", "team_id": "research", "models": ["fake-gpt"], "metadata": {"k": "v"}}
    gateway, requests = litellm(
        httpx.Response(200, json={"info": info}), httpx.Response(200, json={}), httpx.Response(200, json={})
    )
    assert gateway.upsert_key(SPEC) == [KeyChange.TEAM]
    assert requests[0].url.params["key"] == key_hash(API_KEY)  # LiteLLM's token; never the key
    assert API_KEY not in str(requests[0].url)
    # A team move clears the models first: LiteLLM refuses a move while they differ from the team's.
    assert json.loads(requests[1].content) == {"key": API_KEY, "models": []}
    assert json.loads(requests[2].content)["metadata"] == {"k": "v"}  # always the whole dict


@pytest.mark.parametrize(
    "answer",
    [
        litellm_error(404, "not_found_error", "key", "Key not found in database"),
        httpx.Response(200, json={"info": {"key_alias": "kintone-1-5", "status": "deleted"}}),
    ],
    ids=["missing", "deleted"],
)
def test_upsert_creates_a_key_that_is_missing_or_deleted(answer: httpx.Response) -> None:
    gateway, requests = litellm(answer, httpx.Response(200, json={"key": API_KEY}))
    assert gateway.upsert_key(SPEC) == [KeyChange.CREATED]
    assert requests[1].url.path == "/key/generate"


def test_upsert_leaves_a_key_an_admin_blocked_blocked() -> None:
    info = {"key_alias": "kintone-1-5", "team_id": "platform", "models": ["fake-gpt"], "metadata": {"k": "v"}}
    gateway, requests = litellm(httpx.Response(200, json={"info": {**info, "blocked": True}}))
    assert gateway.upsert_key(SPEC) == []
    assert len(requests) == 1  # no delete, no generate: the block stands


def test_upsert_never_adopts_a_key_under_another_alias() -> None:
    info = {"key_alias": "someone-else", "team_id": "platform", "models": ["fake-gpt"], "metadata": {}}
    gateway, _ = litellm(httpx.Response(200, json={"info": info}))
    with pytest.raises(LiteLLMError, match="another alias"):
        gateway.upsert_key(SPEC)


def test_deleting_nothing_is_not_an_error() -> None:
    gateway, _ = litellm(litellm_error(404, "internal_server_error", None, "{'error': 'No keys found'}"))
    assert gateway.delete_keys(["kintone-1-5"]) is False


@pytest.mark.parametrize(
    "answer", [httpx.Response(502, text="bad gateway"), httpx.ReadTimeout("slow"), httpx.ConnectError("down")]
)
def test_litellm_outages_are_transient_after_three_tries(answer) -> None:
    gateway, requests = litellm(answer, answer, answer)
    with pytest.raises(TransientError):
        gateway.create_key(SPEC)
    assert len(requests) == 3


def test_a_rotated_master_key_is_read_again_and_the_call_repeated() -> None:
    master_key = StoredCredential("sk-master-old")
    gateway, requests = litellm(
        litellm_error(401, "auth_error", "None", "Authentication Error, invalid proxy server token"),
        httpx.Response(200, json={"key": API_KEY}),
        master_key=master_key,
    )
    master_key.rotate("sk-master-new")
    gateway.create_key(SPEC)
    assert [request.headers["Authorization"] for request in requests] == [
        "Bearer sk-master-old",
        "Bearer sk-master-new",
    ]


def test_errors_never_carry_a_key() -> None:
    gateway, _ = litellm(litellm_error(400, "bad_request_error", "key", f"bad key {API_KEY}"))
    with pytest.raises(LiteLLMError) as error:
        gateway.create_key(SPEC)
    assert API_KEY not in str(error.value)
