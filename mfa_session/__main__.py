"""Entry point for ``python -m mfa_session``."""

import sys

from mfa_session.cli import main

sys.exit(main())
