"""Where a key is set in a TOML file, so that errors in hand-written files (study configs, training recipes) can
name the file and the line: ``tomllib`` parses values but forgets their lines."""
from __future__ import annotations

import re


def line_of(text: str, key: str, table: str | None = None, index: int = 0) -> str:
    """':N' for the line that sets ``key`` (at top level, or in the index-th [table]/[[table]]), else ''.
    With ``key`` '' and a ``table``: the line of that table's header."""
    current, count = None, {}
    for i, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0].strip()
        head = re.fullmatch(r"\[\[\s*([\w-]+)\s*\]\]", code) or re.fullmatch(r"\[\s*([\w-]+)\s*\]", code)
        if head:
            current = head.group(1)
            count[current] = count.get(current, -1) + 1
            if key == "" and current == table and count[current] == index:
                return f":{i}"
            continue
        here = current is None if table is None else (current == table and count.get(table) == index)
        if here and re.match(rf'["\']?{re.escape(key)}["\']?\s*=', code):
            return f":{i}"
    return ""
