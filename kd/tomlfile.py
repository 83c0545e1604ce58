"""Hand-written TOML files (study configs, training recipes): read them, and find where a key is set, so that an
error can name the file and the line (``tomllib`` parses values but forgets their lines)."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path


def read_toml(path: Path, what: str, error: type[Exception]) -> tuple[str, dict]:
    """(text, parsed) of a TOML file; ``error`` naming the file when it is missing, not UTF-8 or not TOML."""
    if not path.exists():
        raise error(f"{path}: no such {what}")
    try:
        text = path.read_text(encoding="utf-8")
        return text, tomllib.loads(text)
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: malformed TOML: {e}") from None


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
