"""Suite-wide guard: no test may see a credential in what the code printed or logged.

After each test, its captured stdout, stderr and log records are searched for anything shaped like a
LiteLLM key and for every token or master key the code under test loaded. A hit fails the test, so a
leak cannot creep back in through any log line, exception or metric (metrics are printed as EMF).
A failing test's report (assertion values, captured output) is scrubbed before pytest prints it.
"""

from __future__ import annotations

import re

import pytest

from lambdas.domain import redaction

# Real keys are "sk-" and 32+ URL-safe characters; shorter sk- strings in tests are fixtures' names.
KEY_SHAPE = re.compile(r"sk-[A-Za-z0-9_\-]{30,}")


def leaked_credentials(text: str) -> list[str]:
    found = KEY_SHAPE.findall(text)
    found += [secret for secret in tuple(redaction._known_secrets) if secret in text]
    return [value[:6] + "…" for value in found]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        # A failing test's report shows values and captured output: scrub them before they print.
        report.longrepr = redaction.redact(str(report.longrepr))
        report.sections = [(title, redaction.redact(content)) for title, content in report.sections]
        return
    if report.when != "call":
        return
    captured = "\n".join([report.capstdout, report.capstderr, report.caplog])
    leaked = leaked_credentials(captured)
    if leaked:
        report.outcome = "failed"
        report.longrepr = f"credentials in captured output (first characters shown): {sorted(set(leaked))}"


# -- the local stack the tests start -----------------------------------------------------------------
# Integration tests start LiteLLM, PostgreSQL and moto, and the demo test the whole local stack. A
# run that found nothing running stops what it started; one that found the stack up leaves it up.
_LOCAL_STACK_WAS_UP: list[bool] = []
_LOCAL_STACK_STOPPED: list[str] = []


def _local_stack_running() -> list[str]:
    from local import stack  # noqa: PLC0415 - only when a session starts or ends

    return [service.name for service in stack.status() if service.running]


def pytest_sessionstart(session: pytest.Session) -> None:
    _LOCAL_STACK_WAS_UP.append(bool(_local_stack_running()))


def pytest_sessionfinish(session: pytest.Session) -> None:
    started = _local_stack_running() if _LOCAL_STACK_WAS_UP and not _LOCAL_STACK_WAS_UP[0] else []
    if started:
        from local import stack  # noqa: PLC0415

        stack.down()
        _LOCAL_STACK_STOPPED.extend(started)


def pytest_terminal_summary(terminalreporter) -> None:
    if not _LOCAL_STACK_WAS_UP:
        return
    if _LOCAL_STACK_WAS_UP[0]:
        terminalreporter.write_line(
            "local stack: was up before the tests, left up (`make status` lists it; `make down` stops it)"
        )
    elif _LOCAL_STACK_STOPPED:
        terminalreporter.write_line(
            f"local stack: the tests stopped what they started ({len(_LOCAL_STACK_STOPPED)} processes)"
        )
