"""Where a hosted rating study keeps its votes, and whether it may collect them at all.

On a Hugging Face Space (the Space sets ``SPACE_ID``) ``python app.py`` starts with no arguments, configuration
comes from the Space's secrets and variables as environment variables, and the disk is reset at every restart or
rebuild, except persistent storage mounted at ``/data``. So the database is, first found: the ``--study-db`` flag,
``STUDY_DB_URL`` (a PostgreSQL URL kept as a Space secret), on a Space a SQLite file in ``/data`` when it exists
and is writable (``STUDY_DATA_DIR`` names another folder), else the SQLite file beside the study's TOML, which a
Space loses at its next restart: the app says so rather than lose votes silently.

On a Space the study's secrets are required: without ``STUDY_SECRET`` the rater tokens would be signed by a secret
kept in the database (lost with it, or different in a new one, and every rater's link dead), and without
``STUDY_ADMIN_PASSWORD`` nobody could download the votes. Then the app collects no votes and says why.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from study import db

DB_URL_ENV = "STUDY_DB_URL"
DATA_DIR_ENV = "STUDY_DATA_DIR"
DATA_DIR = "/data"  # where a Space mounts its persistent storage
SPACE_ENV = "SPACE_ID"
REQUIRED_ON_SPACE = ("STUDY_SECRET", "STUDY_ADMIN_PASSWORD")


@dataclass(frozen=True)
class Hosting:
    url: str  # the database URL to connect to (may hold a password: never show it)
    where: str  # where the votes are kept, for people (no password)
    persistent: bool  # False: the votes go with the disk at the Space's next restart
    refusal: str | None  # why the app may not collect votes; None when it may

    def notice(self) -> str:
        """One line for the start log and the admin view."""
        if self.persistent:
            return f"Votes are kept in {self.where}."
        return (f"Votes are NOT persistent: they are kept in {self.where}, which this Space loses at its next restart. "
                f"Set {DB_URL_ENV} (a PostgreSQL URL, as a Space secret) or add persistent storage (mounted at "
                f"{DATA_DIR}).")


def writable_dir(path: Path) -> bool:
    """Whether files can really be created in ``path`` (a read-only mount can pass a permission check)."""
    try:
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def parse(url: str, source: str) -> sa.engine.URL:
    """A database URL or a bare SQLite path, as ``db.connect`` takes them; a bad one is a ValueError naming its
    source, not its text (which may hold a password)."""
    try:
        return sa.engine.make_url(url if "://" in url else f"sqlite:///{Path(url).resolve()}")
    except (sa.exc.ArgumentError, ValueError):  # unparseable, or a port that is not a number
        raise ValueError(f"{source} is not a database URL (e.g. postgresql+psycopg://user:password@host:5432/db)") from None


def sqlite_file(url: sa.engine.URL) -> Path | None:
    """The file of a SQLite URL; None for a database server or an in-memory database."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).resolve()


def describe(url: sa.engine.URL) -> str:
    """Where the votes are, for people: the SQLite file, or the server's URL without its password."""
    if url.get_backend_name() == "sqlite":
        return f"the SQLite file {sqlite_file(url)}" if sqlite_file(url) else "an in-memory SQLite database"
    return f"the database {url.render_as_string(hide_password=True)}"


def plan(config_path: Path | str, db_url: str | None = None, environ=os.environ) -> Hosting:
    """Choose the study's database and say whether votes persist and may be collected (see the module doc)."""
    on_space = bool(environ.get(SPACE_ENV))
    data_dir = Path(environ.get(DATA_DIR_ENV) or DATA_DIR)
    has_data = on_space and data_dir.is_dir() and writable_dir(data_dir)
    url = db_url or environ.get(DB_URL_ENV) or (
        f"sqlite:///{(data_dir / (Path(config_path).stem + '.db')).resolve()}" if has_data else db.default_url(config_path))
    parsed = parse(url, "--study-db" if db_url else DB_URL_ENV)
    file = sqlite_file(parsed)
    persistent = not on_space or parsed.get_backend_name() != "sqlite" or (
        file is not None and has_data and file.is_relative_to(data_dir.resolve()))
    missing = [name for name in REQUIRED_ON_SPACE if on_space and not environ.get(name)]
    refusal = None
    if missing:
        refusal = (f"This study is not collecting votes: the Space lacks the secret{'s' * (len(missing) > 1)} "
                   f"{' and '.join(missing)}. Its owner must add {'them' if len(missing) > 1 else 'it'} in the Space's "
                   "settings (Variables and secrets) and restart the Space.")
    return Hosting(url, describe(parsed), persistent, refusal)


def connect(hosting: Hosting) -> sa.Engine:
    """``db.connect`` to the chosen database; one that cannot be reached is a RuntimeError naming it (no password)."""
    try:
        return db.connect(hosting.url)
    except sa.exc.SQLAlchemyError as e:
        raise RuntimeError(f"cannot open {hosting.where}: {getattr(e, 'orig', None) or e}") from None
