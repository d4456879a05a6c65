"""`credential-process`: the JSON every SDK and the AWS CLI read, from the cache or STS."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping

from mfa_session.commands.common import (
    add_session_options,
    refuse_recursion,
    session_request,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mfa_session.commands.common import Subcommands


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    process = commands.add_parser(
        "credential-process",
        parents=[common],
        help="print credential_process JSON for SDKs and the AWS CLI",
        description="Print credential_process JSON (version 1) on stdout, from the cache "
        "or a new MFA session.",
    )
    process.add_argument("--profile", required=True, help="the profile with the long-term keys")
    add_session_options(process)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session.session import get_session

    refuse_recursion(environ)
    request = session_request(args, args.profile)
    session = get_session(request, environ, caller_profile=environ.get("AWS_PROFILE"))
    sys.stdout.write(json.dumps(session.credentials.process_json()) + "\n")
    sys.stdout.flush()
    return 0
