"""Reports how many schedules the explorer covered, whatever pytest's capture settings."""

from __future__ import annotations

from tests.unit.schedules.test_schedules import COVERED


def pytest_terminal_summary(terminalreporter) -> None:
    if any(COVERED.values()):
        terminalreporter.write_sep("-", "schedule explorer")
        for kind, (count, seconds) in COVERED.items():
            if count:
                terminalreporter.write_line(f"{count:,} schedules: {kind} ({seconds:.1f} s)")
