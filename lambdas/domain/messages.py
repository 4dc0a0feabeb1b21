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
    "revoked": {
        "ja": "キーを無効化しました。",
        "en": "The key has been revoked.",
    },
    "gave_up": {
        "ja": "キーを発行できませんでした（一時的な障害が続いています: {reason}）。管理者が対応します。",
        "en": "Could not issue the key (a temporary fault persisted: {reason}). The platform team is told.",
    },
}


def render(message_id: str, language: Language, **values: object) -> str:
    return _TEMPLATES[message_id][language].format(**values)


def join_names(names: tuple[str, ...] | list[str], language: Language) -> str:
    separator = "、" if language == "ja" else ", "
    return separator.join(names) if names else "-"
