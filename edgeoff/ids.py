"""Ids of sites, agents and workers: one pattern, safe as an MQTT topic level and as a Redis key part.

Lower-case letters, digits and hyphens, 1 to 63 characters, starting with a letter or digit: never an MQTT
wildcard (`+`, `#`) or level separator (`/`), never a Redis key separator (`:`).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

__all__ = ["ID_PATTERN", "ID_REGEX", "Id"]

ID_REGEX = r"[a-z0-9][a-z0-9-]{0,62}"
ID_PATTERN = re.compile(ID_REGEX)  # matched with fullmatch
Id = Annotated[str, Field(pattern=f"^{ID_REGEX}$")]  # a pydantic field of this pattern
