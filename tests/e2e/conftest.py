"""pytest fixtures for the deliver end-to-end tests.

Run with MAIL_BIN set to the directory holding deliver (the Makefile's e2e
target does this), as root, with /usr/bin/python3:

    MAIL_BIN=$PWD/bin /usr/bin/python3 -m pytest -q tests/e2e

Every test gets its own throwaway root (see harness.MailRoot), removed
afterwards; set E2E_KEEP=1 to keep the roots of failed tests for a look.
"""

import os

import pytest

import harness


def pytest_report_header(config):
    kind = "sanitizer" if harness.is_sanitizer_build() else "normal"
    return f"deliver under test: {harness.DELIVER} ({kind} build)"


def pytest_collection_modifyitems(config, items):
    problem = None
    if os.geteuid() != 0:
        problem = "the deliver end-to-end tests must run as root"
    elif not os.access(harness.DELIVER, os.X_OK):
        problem = f"no deliver program at {harness.DELIVER} (set MAIL_BIN)"
    if problem:
        raise pytest.UsageError(problem)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.e2e_failed = report.failed


@pytest.fixture
def root(request):
    """A fresh installation for one test: users alice, bob, carol; spool
    root:mail 2775; mail.conf with hostname, spool_dir, log, tmp_dir."""
    mail_root = harness.MailRoot(base=os.environ.get("E2E_TMPDIR"))
    yield mail_root
    if os.environ.get("E2E_KEEP") and getattr(request.node, "e2e_failed",
                                              False):
        print(f"\nkept the throwaway root: {mail_root.path}")
        return
    mail_root.remove()
