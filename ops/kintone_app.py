"""Make the kintone app match the code and the team catalog.

    python -m ops.kintone_app --env dev [--dry-run]     # an environment of cdk.json
    python -m ops.kintone_app --local [--dry-run]       # the local stack (`make up` runs this)

It adds the fields the functions read (never deleting or retyping one), sets the `team`, `models`
and `status` options, sets record permissions (a record is seen by its team, its owner and the
operators' group only) and app permissions (everyone may add records, only operators manage the
app), deploys and waits for the deploy. A second run changes nothing. kintone has no API for webhook
settings, so it ends by printing what to enter by hand.

Credentials, from the environment, never printed: `KINTONE_API_TOKEN` (an API token of the app
with the "Manage app" permission) or `KINTONE_ADMIN_LOGIN` + `KINTONE_ADMIN_PASSWORD` (a user who
may manage the app). Exit status: 0 done (or nothing to do), 1 an error, 2 the app has a field
this command must not change (the message says what to do).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lambdas.domain.settings import FieldCodes, SettingsError, settings_from_environment
from lambdas.domain.teams import TeamCatalog
from local import kintone_directory
from ops.app_plan import Plan, describe, plan_changes
from ops.app_spec import Language, SpecError, TeamMembersAccess, app_spec
from ops.kintone_settings import KintoneAppSettings, KintoneSettingsError, password_auth, token_auth
from stacks.config import ConfigError, load_environment_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_STATE_DIR = Path(os.environ.get("LOCAL_STACK_DIR", REPO_ROOT / ".local"))
DEPLOY_TIMEOUT_SECONDS = 300.0
MISMATCH_EXIT_STATUS = 2

# kintone's names of the webhook events the pipeline needs (app settings → Webhook → 通知を送信する条件).
WEBHOOK_EVENTS = (
    "レコードの追加 (Record added)",
    "レコードの編集 (Record edited)",
    "レコードの削除 (Record deleted)",
    "ステータスの更新 (Status updated)",
)


class UsageError(RuntimeError):
    """The command was given settings or credentials it cannot use; the message says which."""


class AppTarget(BaseModel):
    """One app to configure and what it must hold."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    app_id: str
    field_codes: FieldCodes
    teams: tuple[TeamMembersAccess, ...]
    models: tuple[str, ...]
    operators_group: str
    language: Language
    # Where the person reads the webhook URL: the URL without its token ("" if not known yet), and
    # where the token is ("in the secret …").
    webhook_url_without_token: str
    webhook_token_location: str


def catalog_models(catalog: TeamCatalog) -> tuple[str, ...]:
    return tuple(sorted({model for name in catalog.names() for model in catalog.root[name].models}))


def team_access(catalog: TeamCatalog) -> tuple[TeamMembersAccess, ...]:
    """The catalog's members per team, in the order of the team names."""
    teams = []
    for name in catalog.names():
        members = catalog.root[name].members
        teams.append(
            TeamMembersAccess(
                team=name,
                organizations=tuple((org.code, org.include_subs) for org in members.organizations),
                groups=tuple(members.groups),
            )
        )
    return tuple(teams)


def environment_target(name: str, webhook_url_without_token: str = "") -> AppTarget:
    """An environment of cdk.json, as `cdk deploy -c env=NAME` sees it."""
    context = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    settings = load_environment_settings(context.get("environments"), name)
    stack = f"{settings.resource_prefix}-provisioning"
    return AppTarget(
        base_url=f"https://{settings.kintone.domain}",
        app_id=str(settings.kintone.app_id),
        field_codes=settings.kintone.field_codes,
        teams=team_access(settings.team_catalog),
        models=catalog_models(settings.team_catalog),
        operators_group=settings.kintone.operators_group,
        language=settings.kintone.message_language,
        webhook_url_without_token=webhook_url_without_token
        or f"<the output WebhookUrlWithoutToken of the stack {stack}>",
        # The secret has a generated name (a retried first deploy must not collide): the output names it.
        webhook_token_location=f"the secret named by the output WebhookTokenSecretArn of {stack}",
    )


def read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def local_target(state_dir: Path = LOCAL_STATE_DIR) -> AppTarget:
    """The local stack's app, with the catalog and field codes its functions run with."""
    functions_file = state_dir / "functions.json"
    if not functions_file.exists():
        raise UsageError(f"no local stack settings in {state_dir}: run `make up` first")
    settings = settings_from_environment(json.loads(functions_file.read_text(encoding="utf-8")))
    # `make up` runs this before it has written .local/env for the first time.
    webhook_url = read_env_file(state_dir / "env").get("WEBHOOK_URL", "")
    return AppTarget(
        base_url=settings.kintone_base_url,
        app_id=settings.kintone_app_id,
        field_codes=settings.field_codes,
        teams=team_access(settings.team_catalog),
        models=catalog_models(settings.team_catalog),
        operators_group=kintone_directory.OPERATORS_GROUP,
        language=settings.message_language,
        webhook_url_without_token=webhook_url.rsplit("/", 1)[0] + "/" if webhook_url else "",
        webhook_token_location=f"the end of WEBHOOK_URL in {state_dir / 'env'}",
    )


def credentials(environ: Mapping[str, str], auth: str) -> dict[str, str]:
    """The request headers of the chosen credential ("token", "password" or "auto")."""
    token = environ.get("KINTONE_API_TOKEN", "")
    login, password = environ.get("KINTONE_ADMIN_LOGIN", ""), environ.get("KINTONE_ADMIN_PASSWORD", "")
    if auth == "auto":
        auth = "password" if login and password else "token"
    if auth == "password":
        if not (login and password):
            raise UsageError("password authentication needs KINTONE_ADMIN_LOGIN and KINTONE_ADMIN_PASSWORD")
        return password_auth(login, password)
    if not token:
        raise UsageError(
            "set KINTONE_API_TOKEN (an API token of the app with the 'Manage app' permission), or "
            "KINTONE_ADMIN_LOGIN and KINTONE_ADMIN_PASSWORD (a user who may manage the app)"
        )
    return token_auth(token)


def apply(plan: Plan, kintone: KintoneAppSettings, revision: str, deploy_timeout_seconds: float) -> None:
    if plan.add_fields:
        revision = kintone.add_fields(plan.add_fields, revision)
    if plan.option_updates:
        fields = tuple(update.keeping_removed() for update in plan.option_updates)
        revision = kintone.set_options(fields, revision)
    if plan.record_rights is not None:
        revision = kintone.set_record_rights(plan.record_rights, revision)
    if plan.app_rights is not None:
        revision = kintone.set_app_rights(plan.app_rights, revision)
    removals = tuple(update.field for update in plan.option_updates if update.removed)
    if removals:
        revision = kintone.set_options(removals, revision)
    if plan.deploy:
        kintone.deploy(revision, deploy_timeout_seconds)


def webhook_instructions(target: AppTarget) -> list[str]:
    return [
        "Webhook (kintone has no API for it; enter it once by hand): app settings → 設定 (Settings) → "
        "Webhook → 追加する (Add)",
        f"  Webhook URL: {target.webhook_url_without_token or '<the webhook endpoint>/'}<token>, the token "
        f"being {target.webhook_token_location} (keep it out of chats and tickets)",
        f"  通知を送信する条件 (events to send), tick: {', '.join(WEBHOOK_EVENTS)}",
        "  leave コメントの書き込み (Comment posted) unticked; tick 有効化 (Enable), save, then "
        "アプリを更新 (Update app)",
    ]


def run(
    target: AppTarget,
    kintone: KintoneAppSettings,
    *,
    dry_run: bool,
    out: Callable[[str], None] = print,
    deploy_timeout_seconds: float = DEPLOY_TIMEOUT_SECONDS,
) -> int:
    spec = app_spec(target.field_codes, target.teams, target.models, target.operators_group, target.language)
    preview = kintone.read(preview=True)
    plan = plan_changes(spec, preview, kintone.read(preview=False))
    out(f"kintone app {target.app_id} at {target.base_url}:")
    for line in describe(plan):
        out(f"  {line}")
    if plan.mismatches:
        out("nothing was changed: resolve the problems above, then run again")
        return MISMATCH_EXIT_STATUS
    if dry_run:
        if not plan.changes_nothing:
            out("dry run: nothing was changed")
    elif not plan.changes_nothing:
        apply(plan, kintone, preview.revision, deploy_timeout_seconds)
        out("done" + (": deployed" if plan.deploy else ""))
    for line in webhook_instructions(target):
        out(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.kintone_app", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--env", help="an environment of cdk.json (dev, staging, production)")
    where.add_argument("--local", action="store_true", help="the local stack's app (after `make up`)")
    parser.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")
    parser.add_argument(
        "--auth",
        choices=["auto", "token", "password"],
        default="auto",
        help="credential to use (auto: the admin password when set, else the API token)",
    )
    parser.add_argument(
        "--webhook-url-without-token", default="", help="the stack output, to print the URL in full"
    )
    parser.add_argument("--deploy-timeout", type=float, default=DEPLOY_TIMEOUT_SECONDS, help="seconds")
    args = parser.parse_args(argv)
    try:
        if args.local:
            target = local_target()
            environ = {**read_env_file(LOCAL_STATE_DIR / "env"), **os.environ}
        else:
            target = environment_target(args.env, args.webhook_url_without_token)
            environ = dict(os.environ)
        kintone = KintoneAppSettings(target.base_url, target.app_id, credentials(environ, args.auth))
        return run(target, kintone, dry_run=args.dry_run, deploy_timeout_seconds=args.deploy_timeout)
    except (UsageError, ConfigError, SettingsError, SpecError, KintoneSettingsError) as error:
        # The failures foreseen here carry a message that says what to fix; no traceback needed.
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
