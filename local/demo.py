"""The main job, end to end: a record saved in kintone becomes a working LiteLLM key.

Brings the local stack up, saves a record as a kintone user would, waits for the key to appear
on the record, chats with the key through LiteLLM and prints the time from save to key. Each step
is printed with the time since the start. The key goes to a file only its owner can read
(.local/demo-key), never to the terminal; the demo ends with commands that read it from there.
Messages on the record are Japanese by default: `MESSAGE_LANGUAGE=en make demo` for English.
"""

from __future__ import annotations

import os
import sys
import time

import httpx

from local import kintone_directory, stack

WAIT_SECONDS = 30
KEY_FILE = stack.STATE_DIR / "demo-key"


class StepClock:
    """Prints each step with the seconds since the demo started."""

    def __init__(self) -> None:
        self._started = time.monotonic()

    def __call__(self, step: str) -> None:
        print(f"[{time.monotonic() - self._started:6.1f} s] {step}", flush=True)


def write_key_file(api_key: str) -> None:
    """The key, readable by its owner only (0600 from creation, so it is never readable by others)."""
    KEY_FILE.unlink(missing_ok=True)
    descriptor = os.open(KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(api_key)


def save_record(settings: dict[str, str]) -> str:
    """As a member of team platform (the emulator's taro), or with the app's token on a real kintone."""
    if settings["KINTONE_IS_EMULATOR"] == "true":
        headers = kintone_directory.demo_user_headers(settings, "taro")
    else:
        headers = {"X-Cybozu-API-Token": settings["KINTONE_API_TOKEN"]}
    base_url, app_id = settings["KINTONE_BASE_URL"], settings["KINTONE_APP_ID"]
    response = httpx.post(
        f"{base_url}/k/v1/record.json",
        headers=headers,
        json={
            "app": app_id,
            "record": {"key_name": {"value": "demo notebook"}, "team": {"value": "platform"}},
        },
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["id"]


def wait_for_key(
    base_url: str, app_id: str, api_token: str, record_id: str, is_emulator: bool
) -> tuple[dict, float]:
    """The record once its api_key is filled in, and when that write happened."""
    if is_emulator:
        response = httpx.get(
            f"{base_url}/_emulator/records/wait",
            params={
                "app": app_id,
                "id": record_id,
                "field": "api_key",
                "nonempty": "true",
                "timeout": WAIT_SECONDS,
            },
            timeout=WAIT_SECONDS + 5,
        )
        body = response.json()
        if not body.get("matched"):
            raise SystemExit(
                f"no key on record {record_id} after {WAIT_SECONDS} s: {body['record']['message']}"
            )
        return body["record"], body["matched_at"]
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:  # a real kintone offers no way to wait but asking again
        record = httpx.get(
            f"{base_url}/k/v1/record.json",
            params={"app": app_id, "id": record_id},
            headers={"X-Cybozu-API-Token": api_token},
            timeout=10,
        ).json()["record"]
        if record["api_key"]["value"]:
            return record, time.time()
        time.sleep(0.1)
    raise SystemExit(f"no key on record {record_id} after {WAIT_SECONDS} s")


def main() -> None:
    step = StepClock()
    step("starting the local stack")
    settings = stack.up(progress=lambda part: step(f"  {part}"))
    step("ready; saving a record in kintone as user taro (team platform)")
    base_url, app_id, api_token = (
        settings["KINTONE_BASE_URL"],
        settings["KINTONE_APP_ID"],
        settings["KINTONE_API_TOKEN"],
    )
    is_emulator = settings["KINTONE_IS_EMULATOR"] == "true"
    saved_at = time.time()
    record_id = save_record(settings)
    record, keyed_at = wait_for_key(base_url, app_id, api_token, record_id, is_emulator)
    api_key = record["api_key"]["value"]
    step(f"record {record_id} holds a key; chatting with it")

    chat = httpx.post(
        f"{settings['LITELLM_BASE_URL']}/chat/completions",
        headers={"Authorization": f"Bearer {api_key}"},
        json={"model": "fake-gpt", "messages": [{"role": "user", "content": "hello"}]},
        timeout=30,
    )
    if chat.status_code != 200:
        sys.exit(f"the key was issued but chat answered {chat.status_code}")
    answer = chat.json()["choices"][0]["message"]["content"]
    print(f"record {record_id}: status={record['status']['value']}")
    print(f"  message: {record['message']['value']}")
    write_key_file(api_key)
    print(f"  key:     in {KEY_FILE} (mode 0600), in Secrets Manager and on the record; never printed")
    print(f"  chat with the key: {answer!r}")
    print(f"time from save to key: {(keyed_at - saved_at) * 1000:.0f} ms")
    step("done. Try the key yourself (it reads the key from the file):")
    gateway = settings["LITELLM_BASE_URL"]
    print(
        f'  curl -s {gateway}/v1/chat/completions -H "Authorization: Bearer $(cat {KEY_FILE})" '
        "-H 'Content-Type: application/json' "
        """-d '{"model": "fake-gpt", "messages": [{"role": "user", "content": "hello"}]}'"""
    )
    print(
        f"  OPENAI_API_KEY=$(cat {KEY_FILE}) OPENAI_BASE_URL={gateway}/v1 {sys.executable} -c "
        """'from openai import OpenAI; print(OpenAI().chat.completions.create(model="fake-gpt", """
        """messages=[{"role": "user", "content": "hello"}]).choices[0].message.content)'"""
    )


if __name__ == "__main__":
    main()
