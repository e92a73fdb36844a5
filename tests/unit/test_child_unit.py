"""Pure helpers of the child module: exit codes from wait statuses, and --user."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess

import pytest

from vault_inject.errors import UsageError
from vault_inject.process.child import Identity, exit_code_from_status, resolve_user


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


NOBODY = pwd.getpwnam("nobody")


def test_user_by_name() -> None:
    """'nobody' resolves to its uid, primary gid, name, home (for HOME in the child) and its
    group list, looked up before any fork."""
    assert resolve_user("nobody") == Identity(
        uid=NOBODY.pw_uid,
        gid=NOBODY.pw_gid,
        name="nobody",
        home=NOBODY.pw_dir,
        groups=tuple(os.getgrouplist("nobody", NOBODY.pw_gid)),
    )


def test_user_by_number() -> None:
    """A uid with a passwd entry resolves through the password database."""
    assert resolve_user(str(NOBODY.pw_uid)).name == "nobody"


@pytest.mark.parametrize("group", ["0", "root"])
def test_user_and_group(group: str) -> None:
    """USER:GROUP accepts a name or a number for the group, overriding the primary group."""
    assert resolve_user(f"nobody:{group}").gid == 0


def test_unknown_numeric_user_is_used_as_is() -> None:
    """A numeric uid without a passwd entry is accepted with gid = uid (containers often run so)."""
    assert resolve_user("54321") == Identity(uid=54321, gid=54321, name="", home="")


def test_current_user_means_no_switch() -> None:
    """Asking for the user inject already runs as is not a switch (works without root)."""
    me = pwd.getpwuid(os.getuid()).pw_name
    assert resolve_user(me) == Identity()


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
