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
  ``query``: the query language; ``schema``: the app's fields; ``values``: times and values;
* ``directory``: cybozu users, organizations and groups; ``user_api``: the User API under ``/v1/``;
  ``auth``: app API tokens, passwords and common-administration tokens;
* ``webhooks``: notifications; ``faults``: injected faults and the concurrency limit;
* ``admin``: the ``/_emulator/`` endpoints; ``params``: request parameters; ``errors``: kintone's
  error bodies; ``server``: HTTP; ``cli``: the command line.

Where it differs from kintone, knowingly:

* ``like`` matches a case-insensitive substring; kintone runs a word search.
* Dates in queries (``TODAY()``, ``"2026-11-27"``) are taken in UTC; kintone uses the user's time zone.
* Only the field types an app schema here can hold are supported (single-line text, multi-line text,
  number, drop-down, check box); there is no process management, subtable, lookup, file or updateKey.
"""

from .emulator import KintoneEmulator
from .records import RecordCondition, RecordMatch
from .webhooks import WEBHOOKS_PER_MINUTE

__all__ = ["WEBHOOKS_PER_MINUTE", "KintoneEmulator", "RecordCondition", "RecordMatch"]
