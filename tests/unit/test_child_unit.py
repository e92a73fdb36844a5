"""Pure helpers of the child module: exit codes from wait statuses, and --user (SPEC section 7)."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from vault_inject.child import Identity, exit_code_from_status, resolve_user
from vault_inject.errors import UsageError


def wait_status_of(script: str) -> int:
    """Run ``sh -c script`` and return its raw wait status, collected with os.waitpid."""
    with subprocess.Popen(["sh", "-c", script]) as process:
        _, status = os.waitpid(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)  # already reaped: tell Popen
    return status


@pytest.mark.parametrize("code", [0, 1, 3, 127, 255])
def test_normal_exit_gives_the_childs_code(code: int) -> None:
    """A child that exits with N gives exit code N."""
    assert exit_code_from_status(wait_status_of(f"exit {code}")) == code


@pytest.mark.parametrize(
    ("sig", "expected"),
    [(signal.SIGTERM, 143), (signal.SIGKILL, 137), (signal.SIGHUP, 129), (signal.SIGUSR1, 138)],
)
def test_death_by_signal_gives_128_plus_n(sig: signal.Signals, expected: int) -> None:
    """A child killed by signal N gives 128+N, like a shell."""
    name = sig.name.removeprefix("SIG")
    status = wait_status_of(f"trap - {name}; kill -{name} $$; exit 99")
    assert os.WIFSIGNALED(status)
    assert exit_code_from_status(status) == expected


def test_user_root_by_name() -> None:
    """'root' resolves to uid 0, root's primary gid 0 and the name."""
    assert resolve_user("root") == Identity(uid=0, gid=0, name="root")


def test_user_root_by_number() -> None:
    """'0' resolves through the password database to root."""
    assert resolve_user("0") == Identity(uid=0, gid=0, name="root")


@pytest.mark.parametrize("spec", ["root:root", "root:0", "0:root", "0:0"])
def test_user_and_group(spec: str) -> None:
    """USER:GROUP accepts names and numbers for both parts."""
    assert resolve_user(spec) == Identity(uid=0, gid=0, name="root")


def test_user_with_other_group_number() -> None:
    """An explicit numeric group overrides the user's primary group."""
    assert resolve_user("root:4242") == Identity(uid=0, gid=4242, name="root")


def test_unknown_numeric_user_is_used_as_is() -> None:
    """A numeric uid without a passwd entry is accepted with gid = uid (containers often run so)."""
    assert resolve_user("54321") == Identity(uid=54321, gid=54321, name="54321")


def test_empty_user_means_unchanged() -> None:
    """No --user means the child runs as inject does."""
    assert resolve_user("") == Identity(uid=-1, gid=-1, name="")


def test_unknown_user_is_usage_error_naming_it() -> None:
    """An unknown user name is a UsageError naming --user and the user."""
    with pytest.raises(UsageError, match=r"--user: no user named 'no-such-user-zz9'"):
        resolve_user("no-such-user-zz9")


def test_unknown_group_is_usage_error_naming_it() -> None:
    """An unknown group name is a UsageError naming --user and the group."""
    with pytest.raises(UsageError, match=r"--user: no group named 'no-such-group-zz9'"):
        resolve_user("root:no-such-group-zz9")
