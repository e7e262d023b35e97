"""`alertd users add/list/disable/passwd`: the console's accounts, kept in the store (alertd.accounts).

The store is written directly, beside a running daemon (SQLite serialises the writers): a new user can log in
at once, a disabled one is logged out at once. The password is prompted for (twice) at a terminal, read from
standard input with --password-stdin (one line, for scripts), or generated with --generate and shown once.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import secrets
import sys
import time

from alertd.config import Config
from alertd.core.access import Role
from alertd.errors import AlertdError
from alertd.store import open_store

# The parser is built for every alertd command (alertd run too): argon2 and the rest of the accounts are
# imported when `alertd users` runs.
# ruff: noqa: PLC0415

EXIT_OK, EXIT_FAILED = 0, 1


def run(args: argparse.Namespace, config: Config) -> int:
    try:
        return asyncio.run(_run(args, config))
    except AlertdError as err:  # AccountError: a bad name, group or password
        print(f"alertd: {err}", file=sys.stderr)
        return EXIT_FAILED


async def _run(args: argparse.Namespace, config: Config) -> int:
    from alertd.accounts import AccountError, Accounts  # argon2: only for this command

    now = time.time()
    if args.what == "add":
        groups = [g.strip() for g in args.groups.split(",") if g.strip()]
        unknown = [g for g in groups if g not in config.roster.groups]
        if unknown:
            raise AccountError(f"user {args.name}: no group {', '.join(unknown)} in {config.roster_path}")
    password = _password(args) if args.what in ("add", "passwd") else ""
    store = await open_store(config.settings.store)
    try:
        accounts = Accounts(store)
        match args.what:
            case "add":
                user = await accounts.add(args.name, Role(args.role), groups, password, now)
                await accounts.audit(
                    "alertd users", "local", "user added", f"{user.name} ({user.role}, {user.scope})", now
                )
                print(f"added {user.name}: {user.role}, {user.scope}")
            case "list":
                for user in await accounts.users():
                    state = "disabled" if user.disabled else "active"
                    print(f"{user.name}\t{user.role}\t{user.scope}\t{state}")
            case "disable":
                await accounts.disable(args.name, now)
                await accounts.audit("alertd users", "local", "user disabled", args.name, now)
                print(f"disabled {args.name}; their sessions are ended")
            case "token":
                token = await accounts.create_token(args.name, args.label, now)
                await accounts.audit("alertd users", "local", "api token created", f"{args.name} {args.label}", now)
                print(f"API token for {args.name} (shown once; it acts with their role and groups):\n{token}")
            case "revoke":
                count = await accounts.revoke_tokens(args.name)
                await accounts.audit("alertd users", "local", "api tokens revoked", args.name, now)
                print(f"revoked {count} API token(s) of {args.name}")
            case "passwd":
                await accounts.set_password(args.name, password, now)
                await accounts.audit("alertd users", "local", "password set", args.name, now)
                print(f"new password for {args.name}; their sessions are ended")
    finally:
        await store.close()
    if getattr(args, "generate", False):
        print(f"password (shown once): {password}")
    return EXIT_OK


def _password(args: argparse.Namespace) -> str:
    from alertd.accounts import AccountError

    if args.generate:
        return secrets.token_urlsafe(12)
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise AccountError("no terminal to ask for the password: use --password-stdin or --generate")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise AccountError("the two passwords differ")
    return first
