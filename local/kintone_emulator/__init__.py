"""A local emulator of one kintone app: its REST API and the webhooks kintone sends.

It keeps the app in memory and answers the record, records and comment APIs under ``/k/v1/`` with
kintone's status codes, error codes and JSON shapes, so that the worker, the reconciler and the tests
can run against it instead of a real kintone domain.

Run it as a process (it prints ``KINTONE_BASE_URL=http://127.0.0.1:PORT`` once it is listening)::

    python -m local.kintone_emulator --port 0 --app-id 1 --api-token TOKEN --webhook-url URL

or in-process::

    with KintoneEmulator(app_id="1", api_tokens=["TOKEN"]) as emulator:
        httpx.get(f"{emulator.base_url}/k/v1/records.json", params={"app": "1"}, ...)

Emulator-only endpoints live under ``/_emulator/`` and need no authentication (see ``KintoneEmulator``).

The package, one module per concern:

* ``emulator``: ``KintoneEmulator``, which wires the parts together and routes requests;
* ``rest_api``: the record, records and comment endpoints; ``records``: the record store;
  ``field_values``: a field's value checked as kintone checks it; ``query``: the query language;
  ``schema``: the app's fields; ``values``: times and values;
* ``settings_api`` and ``app_settings``: form fields, record and app permissions, deploy;
  ``permissions``: those permissions applied to a caller;
* ``directory``: cybozu users, organizations and groups; ``user_api``: the User API under ``/v1/``;
  ``auth``: app API tokens, passwords and common-administration tokens;
* ``webhooks``: notifications; ``faults``: injected faults and the concurrency limit;
  ``request_counter``: requests per app and kintone day;
* ``admin``: the ``/_emulator/`` endpoints; ``params``: request parameters; ``errors``: kintone's
  error bodies; ``server``: HTTP; ``cli``: the command line.

Where it differs from kintone, knowingly:

* ``like`` matches a case-insensitive substring; kintone runs a word search.
* Dates in queries (``TODAY()``, ``"2026-11-27"``) are taken in UTC; kintone uses the user's time zone.
* Field types: single-line text, multi-line text, number, drop-down, check box, user selection and
  date-time only; no process management, subtable, lookup, file, updateKey, form layout, views or
  field permissions. An empty date-time reads as ``""`` (not checked against kintone).
* One app per emulator: the 60-a-minute webhook cap, which kintone applies per domain, is the
  emulator's (it counts every kind of notification together, as the domain's cap does).
* Record permissions know USER, GROUP (and "everyone"), ORGANIZATION (with ``includeSubs``) and
  FIELD_ENTITY on the creator, the modifier or a user-selection field; no organization or group
  selection fields, no guest spaces (a guest mentioned in a comment is always refused), no dynamic
  groups but "everyone".
* An app API token has every record right; app management is given per token
  (``app_management_tokens``); kintone's other per-token rights are not emulated. Password sign-in
  has no lock-out, no two-factor and no IP restriction.
* A deploy stays PROCESSING for ``deploy_seconds`` and cannot be cancelled; a deploy asked for while
  one runs gets the emulator's own 409 ``EMULATOR_DEPLOY_RUNNING``.
* The User API's users carry id, code, name, valid, ctime and mtime (other profile fields are null),
  titles only a code; there are no CSV, create or delete APIs (the directory comes from
  ``--directory``). Where cybozu documents no code, the emulator answers: an unknown user,
  organization or group 400 ``CB_VA01``; a bad Bearer token 401 ``CB_AU01``; a write without the
  right 403 ``CB_NO02``.
* Comment notifications are recorded (``KintoneEmulator.comments()``' ``notified``), not sent.
* The request count includes every request naming an app; kintone's uncounted APIs are counted.
"""

from .emulator import KintoneEmulator
from .records import RecordCondition, RecordMatch
from .webhooks import WEBHOOKS_PER_MINUTE

__all__ = ["WEBHOOKS_PER_MINUTE", "KintoneEmulator", "RecordCondition", "RecordMatch"]
