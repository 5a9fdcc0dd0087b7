"""Give up root once the listeners are bound, as Postfix does: relayd parses attacker-controlled SMTP.

relayd started as root binds its ports, makes the spool the --user's, and switches to --user and
--group for good (supplementary groups dropped, no way back) before it starts the spool writer and
the queue runner, so neither helper ever holds root. Still root after that point, it refuses to
run unless --allow-root says so. Started as another user (systemd's User= with
CAP_NET_BIND_SERVICE, docs/deploy/relayd@.service), there is nothing to drop.
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
from pathlib import Path

from relayd.settings import Settings


class PrivilegeError(Exception):
    """relayd cannot give up root as configured, or would run as root without --allow-root."""


def drop_privileges(settings: Settings) -> tuple[int, int] | None:
    """Switch to settings.user/group after binding; return the (uid, gid) switched to, or None if nothing changed.

    Raise PrivilegeError when the user or group is unknown, when relayd is not root but was told to
    switch to someone else, or when it would go on as root without allow_root.
    """
    if settings.user is None:
        if os.geteuid() == 0 and not settings.allow_root:
            raise PrivilegeError(
                "relayd refuses to run as root: give --user and --group to drop to after binding"
                " (or --allow-root, which is not recommended)"
            )
        return None
    uid, gid = _lookup(settings.user, settings.group)
    if os.geteuid() != 0:
        if (os.geteuid(), os.getegid()) == (uid, gid):
            return None
        raise PrivilegeError(f"only root can switch to --user {settings.user}; relayd runs as uid {os.geteuid()}")
    if uid == 0 and not settings.allow_root:
        raise PrivilegeError("--user names root: relayd refuses to run as root unless --allow-root is given")
    _own_tree(settings.spool, uid, gid)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if uid != 0:
        # setuid() from root to another user clears every capability; make sure there is no way back.
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise PrivilegeError("relayd could regain root after dropping privileges")
    _check_access(settings)
    return uid, gid


def _lookup(user: str, group: str | None) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(f"--user {user}: no such user") from None
    if group is None:
        return entry.pw_uid, entry.pw_gid
    try:
        return entry.pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        raise PrivilegeError(f"--group {group}: no such group") from None


def _own_tree(root: Path, uid: int, gid: int) -> None:
    """Give the spool, and whatever an earlier run as root left in it, to uid:gid; symlinks are not followed."""
    for directory, subdirectories, files in os.walk(root):
        for name in [".", *subdirectories, *files]:
            path = os.path.join(directory, name)
            status = os.lstat(path)
            if (status.st_uid, status.st_gid) != (uid, gid):
                os.lchown(path, uid, gid)


def _check_access(settings: Settings) -> None:
    """Fail now, with the fix, rather than at the first message, if the new user cannot do its job."""
    if not os.access(sys.executable, os.X_OK):
        raise PrivilegeError(f"--user {settings.user} cannot run {sys.executable}, which the spool writer needs")
    if not os.access(settings.spool, os.R_OK | os.W_OK | os.X_OK):
        raise PrivilegeError(f"--user {settings.user} cannot write the spool {settings.spool}")
    if settings.workers > 1 and settings.tls_key is not None and not os.access(settings.tls_key, os.R_OK):
        raise PrivilegeError(
            f"--user {settings.user} cannot read {settings.tls_key}, which each intake worker (--workers) loads"
        )
    if settings.policy.exists() and not os.access(settings.policy, os.R_OK):
        raise PrivilegeError(f"--user {settings.user} cannot read the policy {settings.policy}")
    if settings.policy_url is not None and not os.access(settings.policy.parent, os.W_OK | os.X_OK):
        raise PrivilegeError(
            f"--user {settings.user} cannot write {settings.policy.parent}, where the policy fetched is kept"
        )
