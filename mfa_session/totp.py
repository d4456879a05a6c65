"""What AWS's TOTP codes are, for the modules that make, check or wait for them."""

from __future__ import annotations

import re

STEP_SECONDS = 30
DIGITS = 6
SIX_DIGITS = re.compile(r"[0-9]{6}")
