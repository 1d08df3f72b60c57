"""`piper-etl save-token`: store the Piper API token in the Prefect Secret block the flows read.

The token is read from a hidden prompt on a terminal, else from stdin (`pass show piper | piper-etl
save-token`), so it never appears in argv, shell history or the process list. Saving overwrites the
block, so the command can be run again to rotate the token. The flows read `PIPER_API_TOKEN` first
and this block only when it is unset (`flows.prefect_flow.resolve_token`).
"""

from __future__ import annotations

import asyncio
import getpass
from typing import TextIO

from connector.client import token_problem
from flows.errors import UsageError
from flows.settings import TOKEN_BLOCK


def read_token(stdin: TextIO) -> str:
    """The token from a hidden prompt when `stdin` is a terminal, else stdin's first line; stripped and checked."""
    try:
        typed = getpass.getpass("Piper API token (input hidden): ") if stdin.isatty() else stdin.readline()
    except EOFError:  # Ctrl-D at the prompt
        typed = ""
    token = typed.strip()
    if not token:
        raise UsageError("no token given: type it at the prompt, or pipe it on stdin")
    problem = token_problem(token)
    if problem is not None:
        raise UsageError(f"the token {problem}; give it exactly as issued")
    return token


def prefect_api_url() -> str:
    """The Prefect server the block is saved to; a usage error when none is configured.

    Without PREFECT_API_URL, Prefect would save into a temporary local server that no worker reads.
    """
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    if not api_url:
        raise UsageError(
            "no Prefect server: set PREFECT_API_URL (or `prefect config set PREFECT_API_URL=...`) to the server "
            "your workers use"
        )
    return str(api_url)


def save_token(token: str) -> None:
    """Save `token` as the Secret block `piper-api-token`, replacing the one saved before."""
    from prefect.blocks.system import Secret
    from pydantic import SecretStr

    asyncio.run(Secret(value=SecretStr(token)).asave(TOKEN_BLOCK, overwrite=True))
