"""Secrets Manager key store and DynamoDB state store against in-process moto."""

from __future__ import annotations

import datetime
import hashlib
import json
import re

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from lambdas.adapters.dynamodb_state_store import DynamoDBStateStore
from lambdas.adapters.secrets_key_store import SecretsManagerKeyStore
from lambdas.domain.ports import KeyState, KeyStatus, RecordRef, SecretLabels, StateConflictError

REF = RecordRef(app_id="1", record_id="42")
LABELS = SecretLabels(
    requested_by="taro", team="platform", key_alias="kintone-1-42", record_url="https://x/k/1/show#record=42"
)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def store(aws) -> SecretsManagerKeyStore:
    client = boto3.client("secretsmanager")
    return SecretsManagerKeyStore(lambda _user: client, "keys/test/", "", 7)


def test_the_first_call_creates_the_secret_and_later_calls_reuse_it(store: SecretsManagerKeyStore) -> None:
    first = store.get_or_create(REF, LABELS)
    again = store.get_or_create(REF, LABELS)
    assert first.created and not again.created
    assert first.api_key == again.api_key
    assert first.api_key.startswith("sk-") and len(first.api_key) > 40


def test_the_secret_leads_an_auditor_to_the_record(store: SecretsManagerKeyStore) -> None:
    store.get_or_create(REF, LABELS)
    described = boto3.client("secretsmanager").describe_secret(SecretId="keys/test/app-1/record-42")
    tags = {tag["Key"]: tag["Value"] for tag in described["Tags"]}
    assert tags == {
        "kintone:app": "1",
        "kintone:record": "42",
        "kintone:requested-by": "taro",
        "litellm:team": "platform",
        "litellm:key-alias": "kintone-1-42",
    }
    assert "requested by taro" in described["Description"]


def test_a_revoked_record_asking_again_gets_a_new_value(store: SecretsManagerKeyStore) -> None:
    old = store.get_or_create(REF, LABELS)
    store.schedule_deletion(REF)
    store.schedule_deletion(REF)  # repeating is harmless
    renewed = store.get_or_create(REF, LABELS)
    assert renewed.created
    assert renewed.api_key != old.api_key
    value = boto3.client("secretsmanager").get_secret_value(SecretId="keys/test/app-1/record-42")
    assert json.loads(value["SecretString"])["api_key"] == renewed.api_key


def test_a_revoked_value_never_returns_even_after_a_crash_mid_restore(store: SecretsManagerKeyStore) -> None:
    old = store.get_or_create(REF, LABELS)
    store.schedule_deletion(REF, actor="hanako")
    # A crash after restoring the secret and before giving it a new value:
    boto3.client("secretsmanager").restore_secret(SecretId="keys/test/app-1/record-42")
    renewed = store.get_or_create(REF, LABELS)
    assert renewed.created
    assert renewed.api_key not in (old.api_key, "")


def test_rotation_is_turned_on_once_after_issuance() -> None:
    rotator = "arn:aws:lambda:ap-northeast-1:123456789012:function:rotator"
    client = boto3.client("secretsmanager", region_name="ap-northeast-1")
    store = SecretsManagerKeyStore(lambda _user: client, "keys/test/", "", 7, rotator, rotation_days=30)
    name = "keys/test/app-1/record-42"
    with Stubber(client) as stub:
        stub.add_response("describe_secret", {"Name": name, "RotationEnabled": False}, {"SecretId": name})
        stub.add_response(
            "rotate_secret",
            {"Name": name},
            {
                "SecretId": name,
                "RotationLambdaARN": rotator,
                "RotationRules": {"AutomaticallyAfterDays": 30},
                "RotateImmediately": False,
            },
        )
        stub.add_response("describe_secret", {"Name": name, "RotationEnabled": True}, {"SecretId": name})
        store.ensure_rotation(REF)
        store.ensure_rotation(REF)  # already on: no second RotateSecret
        stub.assert_no_pending_responses()


def test_a_rotation_request_turns_rotation_on_where_its_set_up_failed() -> None:
    rotator = "arn:aws:lambda:ap-northeast-1:123456789012:function:rotator"
    client = boto3.client("secretsmanager", region_name="ap-northeast-1")
    store = SecretsManagerKeyStore(lambda _user: client, "keys/test/", "", 7, rotator, rotation_days=30)
    name = "keys/test/app-1/record-42"
    with Stubber(client) as stub:
        stub.add_response("describe_secret", {"Name": name, "RotationEnabled": False}, {"SecretId": name})
        stub.add_response(
            "rotate_secret",
            {"Name": name},
            {
                "SecretId": name,
                "RotationLambdaARN": rotator,
                "RotationRules": {"AutomaticallyAfterDays": 30},
                "RotateImmediately": True,
            },
        )
        store.request_rotation(REF)
        stub.assert_no_pending_responses()


def test_a_refused_rotation_request_is_not_reported_as_started() -> None:
    client = boto3.client("secretsmanager", region_name="ap-northeast-1")
    rotator = "arn:aws:lambda:ap-northeast-1:123456789012:function:rotator"
    store = SecretsManagerKeyStore(lambda _user: client, "keys/test/", "", 7, rotator, rotation_days=30)
    name = "keys/test/app-1/record-42"
    with Stubber(client) as stub:
        stub.add_response(
            "describe_secret",
            {"Name": name, "RotationEnabled": True, "VersionIdsToStages": {"v1" * 16: ["AWSCURRENT"]}},
            {"SecretId": name},
        )
        stub.add_client_error("rotate_secret", "InvalidRequestException", "rotation function not found")
        with pytest.raises(ClientError):
            store.request_rotation(REF)

        # A rotation under way (a pending version) is what was asked for.
        stub.add_response(
            "describe_secret",
            {
                "Name": name,
                "RotationEnabled": True,
                "VersionIdsToStages": {"v1" * 16: ["AWSCURRENT"], "v2" * 16: ["AWSPENDING"]},
            },
            {"SecretId": name},
        )
        stub.add_client_error("rotate_secret", "InvalidRequestException", "A previous rotation isn't done")
        store.request_rotation(REF)


def test_state_round_trips(aws) -> None:
    dynamodb = boto3.resource("dynamodb")
    table = dynamodb.create_table(
        TableName="state",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    states = DynamoDBStateStore(table)
    assert states.get(REF) is None
    state = KeyState(
        app_id="1",
        record_id="42",
        status=KeyStatus.ISSUED,
        key_alias="kintone-1-42",
        key_hash="ab" * 32,
        team="platform",
        models=("fake-gpt",),
        key_name="検証",
        record_revision=3,
        updated_at=1_700_000_000.25,
    )
    stored = states.put(state, expected=None)
    assert stored.version == 1
    assert states.get(REF) == stored == state.model_copy(update={"version": 1})


def test_a_state_write_over_a_state_that_changed_since_it_was_read_is_refused(aws) -> None:
    dynamodb = boto3.resource("dynamodb")
    table = dynamodb.create_table(
        TableName="state",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    states = DynamoDBStateStore(table)
    issuing = KeyState(app_id="1", record_id="42", status=KeyStatus.ISSUING)
    read = states.put(issuing, expected=None)
    with pytest.raises(StateConflictError):
        states.put(issuing, expected=None)  # someone else created it first
    states.put(read.model_copy(update={"team": "research"}), expected=read)
    with pytest.raises(StateConflictError):
        states.put(read.model_copy(update={"status": KeyStatus.ISSUED}), expected=read)  # stale read
    # A state stored before versions existed reads as version 0 and is still written conditionally.
    table.put_item(Item={"pk": "app#1#record#43", "app_id": "1", "record_id": "43", "status": "ISSUED"})
    legacy = states.get(RecordRef(app_id="1", record_id="43"))
    assert legacy.version == 0
    assert states.put(legacy.model_copy(update={"team": "t"}), expected=legacy).version == 1


def test_secret_writes_run_as_the_kintone_user(aws) -> None:
    """With an audit role, CloudTrail shows a role session named after the user (and its SourceIdentity)."""
    from lambdas.adapters.wiring import AuditedClients  # noqa: PLC0415

    role_arn = boto3.client("iam").create_role(
        RoleName="audit", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
    )["Role"]["Arn"]
    clients = AuditedClients(role_arn)

    acting = clients("taro.yamada@example.com")

    assert acting is clients("taro.yamada@example.com")  # one session per user, reused
    assert clients("") is clients._default  # no user: the function's own role
    credentials = acting._request_signer._credentials
    caller = boto3.client(
        "sts",
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
    ).get_caller_identity()
    assert caller["Arn"].endswith(":assumed-role/audit/kintone-taro.yamada@example.com")


def test_every_kintone_user_has_an_identity_of_their_own_that_reads_back(aws) -> None:
    """Non-ASCII names used to collapse to `_` (山田 and 田中 both `__`): now escaped, reversibly."""
    from lambdas.adapters import source_identity  # noqa: PLC0415
    from lambdas.adapters.wiring import AuditedClients  # noqa: PLC0415

    role_arn = boto3.client("iam").create_role(
        RoleName="audit", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
    )["Role"]["Arn"]
    sent: list[dict] = []
    events = boto3._get_default_session().events
    events.register("provide-client-params.sts.AssumeRole", lambda params, **_: sent.append(dict(params)))
    try:
        users = ["山田", "田中", "a", "x=3D", "x=", "user+tag@example.com", "鈴木" * 40, "鈴木" * 41, "taro"]
        clients = AuditedClients(role_arn)
        for user in users:
            clients(user)
    finally:
        events.unregister("provide-client-params.sts.AssumeRole")
    identities = [params["SourceIdentity"] for params in sent]
    assert len(set(identities)) == len(users)
    for user, identity, params in zip(users, identities, sent, strict=True):
        # STS: 2-64 characters of [\w+=,.@-], for SourceIdentity and RoleSessionName alike.
        assert re.fullmatch(r"[A-Za-z0-9_+=,.@-]{2,64}", identity)
        assert re.fullmatch(r"[A-Za-z0-9_+=,.@-]{2,64}", params["RoleSessionName"])
        decoded = source_identity.decode(identity)
        if "==" in identity:  # too long: a prefix of the name, then its hash
            start, _, rest = decoded.partition("… (sha256 ")
            assert user.startswith(start) and len(start) >= 5
            assert rest == f"{hashlib.sha256(user.encode()).hexdigest()[:12]}…)"
        else:
            assert decoded == user
    assert identities[-1] == "taro"  # plain login names stay readable as they are


def test_a_credential_follows_its_secret_once_the_cache_expires_or_it_is_refused(aws) -> None:
    """Clients used to hold the token read at container start until the container was recycled."""
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415

    from lambdas.adapters.credentials import SecretCredential  # noqa: PLC0415

    parameters.clear_caches()
    secrets = boto3.client("secretsmanager")
    secrets.create_secret(Name="kintone-token", SecretString="token-one-xxxx")
    credential = SecretCredential("kintone-token")
    assert credential.current() == "token-one-xxxx"

    secrets.put_secret_value(SecretId="kintone-token", SecretString="token-two-xxxx")
    assert credential.current() == "token-one-xxxx"  # within the cache's age: no read
    for provider in parameters.base.DEFAULT_PROVIDERS.values():  # as if SECRET_CACHE_SECONDS passed
        for key, entry in provider.store.items():
            provider.store[key] = entry._replace(ttl=datetime.datetime.now() - datetime.timedelta(seconds=1))
    assert credential.current() == "token-two-xxxx"

    secrets.put_secret_value(SecretId="kintone-token", SecretString="token-three-xx")
    assert credential.refreshed() == "token-three-xx"  # a refused token: read past the cache
    assert credential.current() == "token-three-xx"
    parameters.clear_caches()
