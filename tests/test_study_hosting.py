"""The rating study on a hosted Space (study/hosting.py): where its votes are kept, that they survive a restart
whose disk reset loses everything but the persistent folder or the database server, that the admin can take them
away for `python -m study report`, and that a Space without the study's secrets collects nothing and says why.
The app runs as a real server in a Space-like environment (SPACE_ID set) and is driven as a rater would."""
import os
import secrets
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from gradio_client import Client

from app_server import running_app
from kd.imagefile import read_image
from study import db, hosting
from study.__main__ import main as study_cli
from study.votes_io import export_votes
from test_study_app import CHROMIUM, call, rater_client, study_ready, token_from, write_study

SECRETS = {"STUDY_SECRET": "a-long-random-secret-for-tests", "STUDY_ADMIN_PASSWORD": "admin-password-for-tests"}
SPACE = {"SPACE_ID": "someone/sharpkd", "PYTHONUNBUFFERED": "1", "STUDY_DB_URL": "", **dict.fromkeys(SECRETS, "")}


def test_off_a_space_the_votes_stay_beside_the_study(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    plan = hosting.plan(tmp_path / "pc.toml", environ={"STUDY_DATA_DIR": str(data)})
    assert plan.url == db.default_url(tmp_path / "pc.toml") and plan.persistent and plan.refusal is None


def test_a_space_keeps_its_votes_in_the_persistent_folder_or_says_they_are_not(tmp_path):
    data = tmp_path / "data"
    space = {**SPACE, **SECRETS, "STUDY_DATA_DIR": str(data)}
    lost = hosting.plan(tmp_path / "pc.toml", environ=space)  # no persistent storage mounted
    assert lost.url == db.default_url(tmp_path / "pc.toml") and not lost.persistent and lost.refusal is None
    assert "NOT persistent" in lost.notice() and "STUDY_DB_URL" in lost.notice()
    data.mkdir()
    kept = hosting.plan(tmp_path / "pc.toml", environ=space)
    assert kept.url == f"sqlite:///{data.resolve() / 'pc.db'}" and kept.persistent
    assert kept.notice() == f"Votes are kept in the SQLite file {data.resolve() / 'pc.db'}."
    flag = hosting.plan(tmp_path / "pc.toml", str(tmp_path / "elsewhere.db"), environ=space)  # a file off /data
    assert not flag.persistent


def test_a_database_url_from_the_environment_wins_and_its_password_is_never_shown(tmp_path):
    url = "postgresql+psycopg://study:pa55word@db.example/votes"
    plan = hosting.plan(tmp_path / "pc.toml", environ={**SPACE, **SECRETS, "STUDY_DB_URL": url})
    assert plan.url == url and plan.persistent and "pa55word" not in plan.notice() and "db.example/votes" in plan.where
    for bad in ("postgresql://study:pa55word@db.example:port/votes", "a typo://x"):
        with pytest.raises(ValueError, match="^STUDY_DB_URL is not a database URL") as error:
            hosting.plan(tmp_path / "pc.toml", environ={"STUDY_DB_URL": bad})
        assert "pa55word" not in str(error.value)


def test_an_unreachable_database_is_one_clear_line_without_its_password(tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    plan = hosting.plan(tmp_path / "pc.toml", f"postgresql+psycopg://study:pa55word@127.0.0.1:{port}/votes")
    with pytest.raises(RuntimeError, match=f"^cannot open the database .*127.0.0.1:{port}/votes: .*refused") as error:
        hosting.connect(plan)
    assert "pa55word" not in str(error.value)


def test_a_space_without_the_study_secrets_refuses_and_names_them(tmp_path):
    both = hosting.plan(tmp_path / "pc.toml", environ=SPACE).refusal
    assert "STUDY_SECRET and STUDY_ADMIN_PASSWORD" in both
    one = hosting.plan(tmp_path / "pc.toml", environ={**SPACE, "STUDY_ADMIN_PASSWORD": "x"}).refusal
    assert "secret STUDY_SECRET." in one and "ADMIN" not in one
    assert hosting.plan(tmp_path / "pc.toml", environ={**SPACE, **SECRETS}).refusal is None


@pytest.fixture(params=["persistent-folder", "postgresql"])
def space_storage(request, tmp_path):
    """(environment of a Space with persistent storage, the URL its votes must be in): a SQLite file in a
    persistent folder, or a PostgreSQL database of its own on the server tests/postgres.sh starts."""
    if request.param == "persistent-folder":
        data = tmp_path / "data"
        data.mkdir()
        yield {"STUDY_DATA_DIR": str(data)}, f"sqlite:///{data / 'pc.db'}"
        return
    server = os.environ.get("SHARPKD_TEST_POSTGRES")
    if not server:
        pytest.skip("no PostgreSQL for tests: tests/run.sh starts one on CI (SHARPKD_TEST_POSTGRES)")
    name = f"sharpkd_space_{secrets.token_hex(4)}"  # its own database: other tests may use the shared one meanwhile
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        yield {"STUDY_DB_URL": url}, url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def read_votes(url: str) -> pd.DataFrame:
    engine = db.connect(url)
    try:
        return export_votes(engine)
    finally:
        engine.dispose()


def rate(client: Client, out, n: int | None = None):
    """Answer the open trial n times (None: to the end of the session); returns the last output."""
    while n is None or n > 0:
        if "completion code" in str(out[-1]):
            return out
        assert "Trial" in out[0] and read_image(out[1]).shape[:2] == (64, 64)  # the rebuilt stimuli are served
        out = call(client, "study_rate", None, None, None, "a", "1440x900@2")
        n = None if n is None else n - 1
    return out


def admin_client(url: str) -> Client:
    """A session that reaches the admin view's hidden event by its position, as the page itself does."""
    client = rater_client(url)
    for endpoint in client.endpoints.values():
        if endpoint.api_name == "/study_admin":
            endpoint.is_valid = True
    return client


def admin_downloads(client: Client, password: str) -> tuple[str, dict[str, Path]]:
    """The admin view's summary and its downloads by file name, as the admin's browser fetches them."""
    summary, _, files = call(client, "study_admin", password)
    paths = [Path(f if isinstance(f, str) else f["path"]) for f in files or []]
    return summary, {p.name: p for p in paths}


def test_votes_and_resume_codes_survive_a_restart_and_leave_with_the_admin(space_storage, tmp_path):
    storage_env, url = space_storage
    config = write_study(tmp_path / "app", "pc")
    env = {**SPACE, **SECRETS, **storage_env}
    with running_app("--study", str(config), env=env, log=tmp_path / "first.log", timeout=480) as app_url:
        study_ready(tmp_path / "first.log")  # the stimuli are built in the background
        client = rater_client(app_url)
        token = token_from(call(client, "study_start", "")[0])
        out = rate(client, call(client, "study_begin"), 3)
        assert "Trial 4 of" in out[0]
    first = read_votes(url)
    assert len(first) == 3 and (first.preference == "a").all()
    said = (tmp_path / "first.log").read_text()
    assert f"Votes are kept in the {'SQLite file' if url.startswith('sqlite') else 'database'}" in said
    assert sa.make_url(url).database in said and "NOT persistent" not in said
    assert not list(config.parent.glob("*.db*"))  # nothing beside the study's file, which a restart loses
    shutil.rmtree(config.parent / f"{config.stem}_stimuli")  # the Space's disk is reset: only the storage is kept

    with running_app("--study", str(config), env=env, log=tmp_path / "second.log", timeout=480) as app_url:
        study_ready(tmp_path / "second.log")  # the stimuli are built in the background
        client = rater_client(app_url)
        resumed = call(client, "study_start", token)  # the rater's resume code still works, at their next trial
        assert "Trial 4 of" in str(resumed)
        out = rate(client, call(client, "study_begin"))
        assert "completion code" in str(out[-1])
        wrong = call(admin_client(app_url), "study_admin", "not the password")
        assert "votes" not in str(wrong[0])
        summary, files = admin_downloads(admin_client(app_url), SECRETS["STUDY_ADMIN_PASSWORD"])
    stored = read_votes(url)
    assert len(stored) > 3 and "Traceback" not in (tmp_path / "second.log").read_text()
    pd.testing.assert_frame_equal(stored.head(3), first)  # the votes before the restart, unchanged
    assert f"**1** raters (1 finished), **{len(stored)}** votes." in summary and "Votes are kept in" in summary

    downloaded = pd.read_csv(files["votes.csv"], keep_default_na=False, dtype=str)  # the lossless export
    with (tmp_path / "stored.csv").open("w") as f:
        stored.to_csv(f, index=False)
    pd.testing.assert_frame_equal(downloaded, pd.read_csv(tmp_path / "stored.csv", keep_default_na=False, dtype=str))

    # analysed elsewhere, as the README says: build the study, import the downloaded votes, report
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert study_cli(["build", str(config), "--db", elsewhere, "--out", str(tmp_path / "elsewhere_stimuli")]) == 0
    assert study_cli(["import-votes", str(files["votes.csv"]), "--db", elsewhere]) == 0
    assert study_cli(["report", "--db", elsewhere, "--out", str(tmp_path / "report")]) == 0
    tables = [name for name in files if name.startswith("conditions_")]
    assert tables and "report.html" in files
    for name in [*tables, "raters.csv"]:
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "report" / name), pd.read_csv(files[name]))


def test_a_space_without_its_secrets_collects_no_votes_and_says_why(tmp_path):
    config = write_study(tmp_path / "app", "pc")
    password = SECRETS["STUDY_ADMIN_PASSWORD"]
    env = {**SPACE, "STUDY_ADMIN_PASSWORD": password, "STUDY_DATA_DIR": str(tmp_path / "no-persistent-storage")}
    log = tmp_path / "app.log"
    with running_app("--study", str(config), env=env, log=log, timeout=480) as url:
        client = Client(url, verbose=False)
        assert not [e for e in client.endpoints.values() if e.api_name in ("/study_start", "/study_rate")]
        summary, files = admin_downloads(admin_client(url), password)
        assert "**0** votes" in summary and "NOT persistent" in summary and list(files) == ["votes.csv"]
        if CHROMIUM:  # what a visitor sees on the Rate tab
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page()
                page.goto(url)
                page.get_by_role("tab", name="Rate").click()
                notice = page.locator("#study-refused")
                notice.wait_for(timeout=30_000)
                assert "not collecting votes" in notice.inner_text() and "STUDY_SECRET" in notice.inner_text()
                assert page.locator("#rater-start").count() == 0
                browser.close()
    said = log.read_text()
    assert "lacks the secret STUDY_SECRET" in said and "NOT persistent" in said and "Traceback" not in said
    engine = db.connect(db.default_url(config))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.raters)).scalar() == 0
    engine.dispose()

