"""Human-readable results written to the record, in Japanese by default and English on request."""

from __future__ import annotations

from typing import Literal

Language = Literal["ja", "en"]

_TEMPLATES: dict[str, dict[Language, str]] = {
    "issued": {
        "ja": "チーム '{team}' のキーを発行しました（モデル: {models}）。",
        "en": "Issued a key for team '{team}' (models: {models}).",
    },
    "updated": {
        "ja": "キーを更新しました: {changes}。",
        "en": "Updated the key: {changes}.",
    },
    "unknown_team": {
        "ja": "チーム '{team}' は登録されていません。利用できるチーム: {known}。",
        "en": "team '{team}' is not a known team. Known teams: {known}.",
    },
    "model_not_allowed": {
        "ja": "モデル {models} はチーム '{team}' では使えません。使えるモデル: {allowed}。",
        "en": "model(s) {models} are not allowed for team '{team}'. Allowed: {allowed}.",
    },
    "missing_field": {
        "ja": "「{field}」が空です。入力して保存し直してください。",
        "en": "'{field}' is empty. Fill it in and save the record again.",
    },
    "invalid_key_name": {
        "ja": "キー名は {max} 文字以内で、制御文字を含めないでください。",
        "en": "The key name must be at most {max} characters with no control characters.",
    },
    "malformed_record": {
        "ja": "レコードの形式がアプリの設定と合いません: {reason}。管理者に連絡してください。",
        "en": "The record does not match the app's schema: {reason}. Contact the platform team.",
    },
    "owner_not_allowed": {
        "ja": (
            "{owner} はチーム '{team}' のキーを持てません（{reason}）。"
            "持てるのは {members} に所属する有効なユーザーです。"
        ),
        "en": "{owner} may not hold a key of team '{team}' ({reason}). Only active members of {members} may.",
    },
    "owner_ambiguous": {
        "ja": "「{field}」にはキーを持つユーザーを 1 人だけ選んでください。",
        "en": "Choose exactly one user in '{field}', the one who holds the key.",
    },
    "revoked_owner_left": {
        "ja": (
            "{owner} がチーム '{team}' のキーを持てなくなったため（{reason}）、キーを無効化しました。"
            "持てるのは {members} に所属する有効なユーザーです。"
        ),
        "en": (
            "The key was revoked: {owner} may no longer hold a key of team '{team}' ({reason}). "
            "Only active members of {members} may."
        ),
    },
    "revoked": {
        "ja": "キーを無効化しました。",
        "en": "The key has been revoked.",
    },
    "rotation_requested": {
        "ja": "キーのローテーションを開始しました。新しいキーはこの欄に書き込まれます。",
        "en": "Key rotation started. The new key will be written here.",
    },
    "rotated": {
        "ja": "キーをローテーションしました。古いキーは {grace} 後に無効になります。",
        "en": "The key was rotated. The old key stops working in {grace}.",
    },
    "rotation_failed": {
        "ja": "キーのローテーションに失敗しました（{reason}）。今のキーは引き続き使えます。",
        "en": "Key rotation failed ({reason}). The current key keeps working.",
    },
    "comment_issued": {
        "ja": "キーを発行しました。レコードの api_key 欄を確認してください。",
        "en": "Your key has been issued. See the record's api_key field.",
    },
    "comment_rotated": {
        "ja": "キーをローテーションしました。新しいキーに切り替えてください（古いキーは {grace} 後に無効）。",
        "en": "Your key was rotated. Switch to the new key (the old one stops working in {grace}).",
    },
    "comment_revoked": {
        "ja": "キーを無効化しました。",
        "en": "Your key has been revoked.",
    },
    "budget_of_key": {
        "ja": "このキーの予算",
        "en": "This key's budget",
    },
    "budget_of_team": {
        "ja": "チーム '{team}' の予算",
        "en": "Team '{team}''s budget",
    },
    "comment_budget_crossed": {
        "ja": "{whose}を使い切りました（利用額 {spend} / 予算 {max_budget}）。"
        "リセットまでリクエストは拒否されます。",
        "en": "{whose} is used up (spend {spend} of {max_budget}). Requests are refused until it resets.",
    },
    "comment_threshold_crossed": {
        "ja": "{whose}の残りがわずかです（利用額 {spend} / 予算 {max_budget}）。",
        "en": "{whose} is nearly used up (spend {spend} of {max_budget}).",
    },
    "comment_projected_limit_exceeded": {
        "ja": "このペースでは {date} に{whose}を超える見込みです（利用額 {spend} / 予算 {max_budget}）。",
        "en": "At this rate, {whose} will run out on {date} (spend {spend} of {max_budget}).",
    },
    "request_pending": {
        "ja": "依頼を処理できませんでした（{attempts} 回試しました: {reason}）。自動で再試行します。",
        "en": "The request did not complete after {attempts} attempts ({reason}). It will be retried.",
    },
    "gave_up": {
        "ja": "キーを発行できませんでした（{attempts} 回試しました: {reason}）。管理者に通知されています。",
        "en": "Could not issue the key after {attempts} attempts ({reason}). The platform team is alerted.",
    },
}


def render(message_id: str, language: Language, **values: object) -> str:
    return _TEMPLATES[message_id][language].format(**values)


def duration(seconds: int, language: Language) -> str:
    """A grace period for people: the largest whole unit."""
    for unit_seconds, ja, en in (
        (86_400, "日", " day(s)"),
        (3_600, "時間", " hour(s)"),
        (60, "分", " minute(s)"),
    ):
        if seconds >= unit_seconds:
            return f"{seconds // unit_seconds}{ja if language == 'ja' else en}"
    return f"{seconds}{'秒' if language == 'ja' else ' second(s)'}"


def join_names(names: tuple[str, ...] | list[str], language: Language) -> str:
    separator = "、" if language == "ja" else ", "
    return separator.join(names) if names else "-"


_STANDING_REASONS: dict[str, dict[Language, str]] = {
    "not_member": {"ja": "チームのメンバーではありません", "en": "not a member of the team"},
    "deactivated": {"ja": "ユーザーが停止されています", "en": "the user is deactivated"},
    "no_such_user": {"ja": "cybozu.com にそのユーザーがいません", "en": "no such cybozu.com user"},
}


def standing_reason(standing: str, language: Language) -> str:
    """Why a user may not hold a team's key, from a membership standing other than member."""
    return _STANDING_REASONS[standing][language]


def describe_members(organizations: list[tuple[str, bool]], groups: list[str], language: Language) -> str:
    """A team's members for people: its organizations (with or without sub-organizations) and groups."""
    if language == "ja":
        parts = [f"組織 {code}{'（下位組織を含む）' if subs else ''}" for code, subs in organizations]
        parts += [f"グループ {code}" for code in groups]
    else:
        parts = [
            f"organization {code}{' (with sub-organizations)' if subs else ''}"
            for code, subs in organizations
        ]
        parts += [f"group {code}" for code in groups]
    return join_names(parts, language)
