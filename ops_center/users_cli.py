"""``smartward users add|list|disable|enable|passwd``.

    smartward users add NAME --role ward_staff --site thong-nhat [--password-stdin]
    smartward users list
    smartward users disable NAME        (its tokens stop working at once)
    smartward users passwd NAME [--password-stdin]

Without ``--password-stdin`` the password is asked twice on the terminal. Every change is
in the audit log, with the operating-system user as the actor.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence

from contract.errors import RegistryError
from contract.registry import load_registry
from ops_center.adapters.factory import open_repository
from ops_center.adapters.ports import UserRepository
from ops_center.adapters.repository import OpsRepository, RepositoryError, UserExists
from ops_center.domain.roles import ROLES
from ops_center.settings import OpsSettings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smartward users", description="Người dùng / users")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("add", help="thêm người dùng / add a user")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--site", action="append", default=[], help="repeat for several sites")
    a.add_argument("--password-stdin", action="store_true")
    sub.add_parser("list", help="danh sách / list users")
    for cmd in ("disable", "enable"):
        d = sub.add_parser(cmd)
        d.add_argument("name")
    pw = sub.add_parser("passwd", help="đổi mật khẩu / set a password")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true")
    return p


def _password(from_stdin: bool) -> str:
    from ops_center.security.users import UserAdminError

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Mật khẩu / password: ")
    if getpass.getpass("Nhập lại / again: ") != first:
        raise UserAdminError("hai lần nhập không khớp / the passwords differ")
    return first


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    # argon2 (the ops extra) comes with these: imported when a command runs, not for --help.
    from ops_center.security.passwords import PasswordPolicyError
    from ops_center.security.users import UserAdminError

    # Managing users needs the database, not the signing key.
    settings = OpsSettings(environment="local")
    if args.command == "list":  # read-only: never creates the database
        from smartward.db_probe import missing_database

        missing = missing_database(settings.db_url)
        if missing is not None:
            print(missing, file=sys.stderr)
            return 1
    try:
        repo: OpsRepository = open_repository(settings.db_url)
    except (RepositoryError, ValueError) as exc:
        print(f"Không mở được cơ sở dữ liệu / cannot open the database: {exc}", file=sys.stderr)
        return 1
    try:
        if args.command != "list":
            repo.migrate()
        return _run(args, repo.users, settings)
    except (UserAdminError, PasswordPolicyError, RegistryError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except UserExists as exc:
        print(f"Người dùng đã tồn tại / user exists: {exc}", file=sys.stderr)
        return 1
    except RepositoryError as exc:
        print(f"Lỗi cơ sở dữ liệu / database error: {exc}", file=sys.stderr)
        return 1
    finally:
        repo.close()


def _run(args: argparse.Namespace, users: UserRepository, settings: OpsSettings) -> int:
    from ops_center.security.passwords import Passwords
    from ops_center.security.users import add_user, set_disabled, set_password

    if args.command == "list":
        print(f"{'tên/name':<24} {'vai trò/role':<16} {'địa bàn/sites':<32} trạng thái/state")
        for u in users.list_users():
            print(
                f"{u.name:<24} {u.role:<16} {','.join(u.sites) or '*':<32} "
                f"{'đã khóa/disabled' if u.disabled else 'hoạt động/active'}"
            )
        return 0
    if args.command in ("disable", "enable"):
        set_disabled(users, name=args.name, disabled=args.command == "disable", actor=_actor())
        print(f"{args.name}: {'đã khóa / disabled' if args.command == 'disable' else 'đã mở / enabled'}")
        return 0
    passwords = Passwords()
    if args.command == "passwd":
        set_password(users, passwords, name=args.name, password=_password(args.password_stdin),
                     actor=_actor())
        print(f"{args.name}: đã đổi mật khẩu / password changed")
        return 0
    registry = load_registry(settings.registry)
    user = add_user(
        users,
        passwords,
        registry,
        name=args.name,
        role=args.role,
        sites=args.site,
        password=_password(args.password_stdin),
        actor=_actor(),
    )
    print(f"{user.name}: {user.role} {','.join(user.sites) or '*'}")
    return 0
