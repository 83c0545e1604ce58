"""The rating study as served: nothing but opaque stimuli is readable over the web, the study's events are off the
public API and act only through signed tokens, and each design is driven through the app (gradio_client for pc,
acr-hr and dcr; Chromium for acr-hr at a device pixel ratio of 2)."""
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from gradio_client import Client

from app_server import ROOT, free_port, running_app, serving
from kd.imagefile import read_image, rgb
from study import access, db
from study.config import load_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

STUDY = """
design = "{design}"
votes_per_pair = 1000
trials_per_rater = 4
gold_share = 0.25
repeat_share = 0.25
repeat_gap = 1
min_response_ms = {min_ms}
crop = 64

[[images]]
name = "astronaut"
path = "skimage:astronaut"

[[training]]
name = "rocket"
path = "skimage:rocket"

[[conditions]]
name = "reference"
kind = "reference"

[[conditions]]
name = "mild"
kind = "degraded"
preset = "mild"

[[conditions]]
name = "medium"
kind = "degraded"
preset = "medium"
"""


def write_study(folder: Path, design: str, min_ms: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{design}.toml"
    path.write_text(STUDY.format(design=design, min_ms=min_ms))
    return path


@contextlib.contextmanager
def study_server(config: Path, timeout: float = 120):
    """`python -m study serve CONFIG` on a free port (stimuli built first, as a researcher would)."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    subprocess.run([sys.executable, "-m", "study", "build", str(config)], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    port = free_port()
    with serving([sys.executable, "-m", "study", "serve", str(config), "--port", str(port)],
                 f"http://127.0.0.1:{port}/", timeout, env) as url:
        yield url


def rater_client(url: str) -> Client:
    """A gradio_client session that reaches the study's hidden events by their position, as the page itself does:
    hiding them from the API stops casual scripted use; the signed token is what stops impersonation."""
    client = Client(url, verbose=False)
    for endpoint in client.endpoints.values():
        if endpoint.api_name in ("/study_start", "/study_begin", "/study_rate"):
            endpoint.is_valid = True
    return client


def call(client: Client, name: str, *args):
    index = next(i for i, e in client.endpoints.items() if e.api_name == f"/{name}")
    return client.predict(*args, fn_index=index)


def token_from(resume_text: str) -> str:
    return resume_text.split("`")[1]


def rate_whole_session(client: Client, answer, display="1440x900@2"):
    """Start as a new rater, read the instructions, answer every trial; returns (token, trials seen, last output)."""
    started = call(client, "study_start", "")
    token = token_from(started[0])
    out = call(client, "study_begin")
    seen = 0
    while "completion code" not in str(out[-1]):
        progress, left, right = out[0], out[1], out[2]
        assert "Trial" in progress and read_image(left).shape[:2] == (64, 64)
        for path in (left, right):
            assert path is None or not any(c in Path(path).name for c in ("reference", "mild", "medium", "gold"))
        out = call(client, "study_rate", *answer, display)
        seen += 1
        assert seen <= 20
    return token, seen, out


def stored_votes(config: Path) -> pd.DataFrame:
    engine = db.connect(db.default_url(config))
    with engine.connect() as conn:
        return pd.read_sql(sa.select(db.votes), conn)


def study_ready(log: Path, timeout: float = 300) -> str:
    """Wait until app.py says (in its output) that the study's stimuli, built in the background, are ready; the log."""
    deadline = time.time() + timeout
    while "Rating study: stimuli ready" not in (said := log.read_text()):
        assert "could not render" not in said and time.time() < deadline, said
        time.sleep(0.2)
    return said


@pytest.fixture(scope="module")
def app_study(tmp_path_factory):
    """app.py with a pc study whose database lies beside its file (the default), as on a Space."""
    config = write_study(tmp_path_factory.mktemp("space"), "pc", min_ms=4000)
    log = config.parent / "app.log"
    with running_app("--study", str(config), timeout=480, log=log) as url:  # warm-up is slow on a loaded machine
        said = study_ready(log)
        assert "Rating study: rendering stimuli 6/6" in said  # 3 conditions and gold, 2 anchors: counted
        yield url, config


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_only_opaque_stimuli_are_served(app_study):
    url, config = app_study
    folder = config.parent
    stimuli = folder / f"{config.stem}_stimuli"
    serve = sorted((stimuli / "serve").glob("*.png"))
    cache = sorted((stimuli / "cache").rglob("*.png"))
    assert serve and cache and (folder / "pc.db").exists()

    def file_url(path) -> str:
        return url + "gradio_api/file=" + urllib.parse.quote(str(path))

    status, body = get(file_url(serve[0]))
    assert status == 200 and body[:4] == b"\x89PNG"  # the control: rater-facing images are served
    for secret in (folder / "pc.db", folder / "pc.db-wal", config, cache[0], stimuli / "serve" / ".." / "cache" /
                   cache[0].relative_to(stimuli / "cache"), stimuli / "serve" / ".." / ".." / "pc.db"):
        status, body = get(file_url(secret))
        assert status != 200 and b"SQLite format" not in body, secret
    status, body = get(url + "gradio_api/file=" + urllib.parse.quote(str(folder)))
    assert status != 200


def test_study_events_are_not_public_api(app_study):
    url, _ = app_study
    client = Client(url, verbose=False)
    api = client.view_api(print_info=False, return_format="dict")
    assert not {"/study_start", "/study_begin", "/study_rate"} & set(api["named_endpoints"])
    with pytest.raises(ValueError):
        client.predict("", api_name="/study_start")


MIN_S = 4.0  # the app study's min_response_ms, long enough that an immediate answer is early even under load


def test_a_guessed_or_forged_rater_id_gets_nothing(app_study):
    url, config = app_study
    honest = rater_client(url)
    token = token_from(call(honest, "study_start", "")[0])
    call(honest, "study_begin")
    time.sleep(MIN_S + 0.2)
    assert "Trial 2 of" in call(honest, "study_rate", None, None, None, "a", "1x1@1")[0]
    rater = token.rsplit(".", 1)[0]
    attacker = rater_client(url)
    for forged in (rater, rater + ".AAAAAAAAAAAAAAAAAAAAAA", token[:-2]):
        out = call(attacker, "study_start", forged)
        assert out[0] in ("", None) and "Trial" not in str(out[1])
    out = call(attacker, "study_begin")  # without a valid start there is no rater in the session
    assert not any(isinstance(v, str) and v.endswith(".png") for v in out)
    out = call(attacker, "study_rate", None, None, None, "b", "1x1@1")
    assert "Trial" not in str(out[0])
    resumed = call(rater_client(url), "study_start", token)  # the real token resumes where the rater was
    assert "Trial 2 of" in resumed[1]
    votes = stored_votes(config)
    assert len(votes[votes.rater == rater]) == 1 and votes.preference.isin(["a", "b"]).all()
    with db.connect(db.default_url(config)).connect() as conn:
        ids = set(conn.execute(sa.select(db.raters.c.id)).scalars())
    assert not {f for f in ids if f.startswith(rater) and f != rater}  # no forged id was ever registered


def test_answers_faster_than_the_minimum_time_are_refused(app_study):
    url, config = app_study
    client = rater_client(url)
    token = token_from(call(client, "study_start", "")[0])
    first = call(client, "study_begin")
    assert "Trial 1 of" in first[0]
    out = call(client, "study_rate", None, None, None, "b", "1x1@1")  # at once: refused, the trial stays
    assert "Trial 2 of" not in str(out[0])
    time.sleep(MIN_S + 0.2)
    out = call(client, "study_rate", None, None, None, "b", "1x1@1")
    assert "Trial 2 of" in out[0]
    votes = stored_votes(config)
    mine = votes[votes.rater == token.rsplit(".", 1)[0]]
    assert len(mine) == 1 and mine.response_ms.iloc[0] >= MIN_S * 1000


@pytest.mark.parametrize("design, answer", [("acr-hr", (None, None, 4, None)), ("dcr", (None, None, 3, None))])
def test_scored_designs_run_a_whole_session(tmp_path, design, answer):
    config = write_study(tmp_path, design)
    with study_server(config) as url:
        token, seen, out = rate_whole_session(rater_client(url), answer)
    votes = stored_votes(config)
    assert seen == len(votes) == 8 and set(votes.kind) == {"training", "main", "gold", "repeat"}
    assert (votes.score_a == answer[2]).all() and votes.preference.isna().all() and (votes.pixel_ratio == 2).all()
    if design == "dcr":
        rated = votes[votes.kind != "training"]
        assert set(rated.condition_b) == {"reference"} and "reference" not in set(rated.condition_a)
    else:
        assert votes.condition_b.isna().all()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (tests/run.sh installs it on CI)")
def test_browser_shows_stimuli_pixel_for_pixel_and_records_the_display(tmp_path):
    from playwright.sync_api import sync_playwright

    config = write_study(tmp_path, "acr-hr")
    with study_server(config) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        page = browser.new_page(viewport={"width": 1200, "height": 1000}, device_scale_factor=2)
        page.goto(url)
        page.locator("#rater-code textarea, #rater-code input").first.fill("someone-else")  # not a signed token
        page.locator("#rater-start").click()
        page.get_by_text("not valid").first.wait_for(timeout=30_000)  # a notice, not an error panel over the tab
        page.locator("#rater-code textarea, #rater-code input").first.fill("")
        page.locator("#rater-start").click()  # still clickable: an open study enrols a new rater
        page.locator("#rater-resume").get_by_text("keep this code").wait_for(timeout=30_000)
        token = page.locator("#rater-resume code").first.inner_text()
        page.locator("#rater-begin").click()
        page.get_by_text("Trial 1 of").wait_for(timeout=30_000)
        img = page.locator("#stim-a img").first
        img.wait_for(timeout=30_000)
        page.wait_for_function("() => { const i = document.querySelector('#stim-a img'); "
                               "return i && i.naturalWidth && i.style.width; }", timeout=10_000)
        shown = img.evaluate("i => [i.naturalWidth, i.getBoundingClientRect().width * window.devicePixelRatio]")
        assert shown[0] == 64 and abs(shown[1] - 64) < 0.5  # one image pixel per device pixel
        controls = page.locator("[aria-label], [title], a[download]").evaluate_all(
            "es => es.map(e => (e.getAttribute('aria-label') || '') + (e.getAttribute('title') || '') + "
            "(e.hasAttribute('download') ? 'download' : ''))")
        assert not [c for c in controls if any(w in c.lower() for w in ("download", "share", "fullscreen"))]
        page.locator("#score").get_by_text("4 – Good").click()
        page.locator("#rater-next").click()
        page.get_by_text("Trial 2 of").wait_for(timeout=30_000)
        page.goto(url + "?token=" + urllib.parse.quote(token))  # a new visit with the token resumes
        page.get_by_text("Trial 2 of").wait_for(timeout=30_000)
        browser.close()
    votes = stored_votes(config)
    assert len(votes) == 1 and votes.score_a[0] == 4
    assert votes.pixel_ratio[0] == 2 and votes.screen_w[0] > 0 and votes.screen_h[0] > 0
    secret = access.server_secret(db.connect(db.default_url(config)))
    assert access.verify(secret, token) == votes.rater[0]


BLIND = """
design = "{design}"
crop = 48

[[images]]
name = "astronaut"
path = "skimage:astronaut"

[[training]]
name = "rocket"
path = "skimage:rocket"

[[conditions]]
name = "reference"
kind = "reference"

[[conditions]]
name = "degraded"
kind = "degraded"
preset = "medium"

[[conditions]]
name = "unsharp"
kind = "unsharp"
preset = "mild"

[[conditions]]
name = "student"
kind = "model"
model = "student"
preset = "medium"

[[conditions]]
name = "teacher"
kind = "model"
model = "teacher"
preset = "medium"
"""


def rater_sees(blocks) -> tuple[list[str], dict[str, str]]:
    """(every text of the page a rater on the Rate tab can read: title, the header above the tabs, the tab's labels,
    choices, instructions and buttons, hidden ones included; the labels of its pictures by elem_id or label)."""
    config = blocks.get_config_file()
    comps = {c["id"]: c for c in config["components"]}
    texts, pictures = [config["title"]], {}

    def walk(node, inside: bool):
        c = comps.get(node["id"])
        if c and c["type"] == "tabitem":
            inside = c["props"].get("label") == "Rate"
        elif c and inside:
            props = c["props"]
            texts.extend(props[k] for k in ("label", "info", "placeholder", "value") if isinstance(props.get(k), str))
            texts.extend(str(ch[0] if isinstance(ch, (list, tuple)) else ch) for ch in props.get("choices") or [])
            if c["type"] == "image":
                pictures[props.get("elem_id") or props.get("label")] = props.get("label") or ""
        for child in node.get("children", []):
            walk(child, inside)

    walk(config["layout"], True)  # outside every tab: the page's header, shown with the Rate tab too
    return texts, pictures


@pytest.mark.parametrize("design", ["pc", "ab", "acr-hr", "dcr"])
def test_the_rate_tab_names_no_condition_and_pair_designs_show_no_scale_anchors(tmp_path, design):
    import app
    from study.ui import make_app as study_app

    config = tmp_path / f"{design}.toml"
    config.write_text(BLIND.format(design=design))
    cfg = load_config(config)
    study = app.open_study(str(config), None)
    assert study[3].wait(300)
    forbidden = ({c.name for c in cfg.conditions} | {c.kind for c in cfg.conditions} | {c.model for c in cfg.conditions}
                 | {c.preset for c in cfg.conditions} | {cfg.gold_preset, "student", "teacher", "degraded"}) - {""}
    if design == "dcr":
        forbidden.discard("reference")  # dcr shows its reference, labelled, by design
    named = re.compile(r"\b(" + "|".join(map(re.escape, sorted(forbidden))) + r")\b", re.IGNORECASE)
    for blocks in (app.make_app(study=study), study_app(cfg, study[1])):
        texts, pictures = rater_sees(blocks)
        assert "Which looks better?" in texts or "Quality of the picture" in texts or "How impaired" in str(texts)
        assert not [t for t in texts if named.search(t)], design
        anchors = {k: v for k, v in pictures.items() if k.startswith("anchor-")}
        assert set(anchors) == {"anchor-best", "anchor-worst"}, pictures  # the practice photo's two anchors
        if design in ("pc", "ab"):  # no 5-point scale to anchor: better and worse examples
            assert anchors == {"anchor-best": "Better", "anchor-worst": "Worse"}
        else:
            assert re.search(r"\(1\)$", anchors["anchor-worst"])


def test_the_studys_photos_are_none_of_the_apps_examples():
    """A rater must not be able to make the study's conditions of a rated photo in the app's other tabs: the photos
    of study/example.toml (rated and practice) are none of the clickable examples in demo/, by their pixels."""
    from study.stimuli import load_source

    cfg = load_config(ROOT / "study" / "example.toml")
    examples = {p.name: rgb(read_image(p)).astype(np.int16) for p in sorted((ROOT / "demo").rglob("*.png"))}
    assert len(examples) >= 6
    for im in cfg.images + cfg.training:
        photo = load_source(im.path, 0).astype(np.int16)
        for name, example in examples.items():
            alike = example.shape == photo.shape and np.abs(example - photo).mean() < 20
            assert not alike, f"the study's photo {im.name!r} is the app's example {name}"


def test_each_showing_has_a_fresh_name_and_fresh_bytes(tmp_path):
    """A repeat, or a picture shown again in another pair, must not be recognisable by its served file: each showing
    gets its own random name and bytes (Gradio keeps served copies in folders named by their content's hash)."""
    config = write_study(tmp_path, "pc")
    shown = {}
    with study_server(config) as url:
        client = rater_client(url)
        call(client, "study_start", "")
        out = call(client, "study_begin")
        while "completion code" not in str(out[-1]):
            index = len(shown)
            shown[index] = [Path(p) for p in out[1:3]]
            out = call(client, "study_rate", None, None, None, "a", "1x1@1")
    votes = stored_votes(config).set_index("trial")
    assert len(votes) == len(shown) == 8 and (votes.kind == "repeat").sum() == 1
    files = [p for pair in shown.values() for p in pair]
    assert len({p.name for p in files}) == len(files) == 16  # no served name twice
    assert len({p.parent.name for p in files}) == len(files)  # the client's download folder: the sha256 of the bytes
    repeat = votes[votes.kind == "repeat"].iloc[0]
    first = shown[int(repeat.repeat_of)]
    again = shown[int(votes.index[votes.kind == "repeat"][0])]
    for before, now in zip(first, reversed(again)):  # the same pair, sides swapped: the same pixels
        assert np.array_equal(read_image(before), read_image(now))


@contextlib.contextmanager
def another_writer(database: Path):
    """Holds the SQLite database's write lock, as another writer would: a build must wait (its busy timeout is 30 s)
    before storing anything, which holds it back for as long as a test needs, on any machine."""
    import sqlite3

    engine = db.connect(f"sqlite:///{database}")
    access.server_secret(engine)  # the server secret exists before: the app reads it, and reading is not held up
    engine.dispose()
    lock = sqlite3.connect(database, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        yield lock
    finally:
        lock.rollback()
        lock.close()


def handler(blocks, api_name: str):
    return next(f.fn for f in blocks.fns.values() if f.api_name == api_name)


def test_the_app_does_not_wait_for_the_study_to_be_built(tmp_path, capsys):
    """open_study returns before a single stimulus is built: the build runs in the background and counts in the log,
    the Rate tab says the study is being prepared (and refuses to start) until it is ready, then it rates."""
    import app

    config = write_study(tmp_path, "pc")
    with another_writer(tmp_path / "pc.db") as writer:
        study = app.open_study(str(config), None)
        returned = time.monotonic()
        preparing = study[3]
        blocks = app.make_app(study=study)  # the whole app, the Rate tab included, before any stimulus exists
        status, start_col, timer = handler(blocks, "study_status")()
        assert status.visible and "The study is being prepared… (rendering stimuli 0/6)" in status.value
        assert start_col.visible is False and timer.active
        with pytest.warns(UserWarning, match="being prepared"):
            refused = handler(blocks, "study_start")("")
        assert refused[:2] == ("", "") and not preparing.ready
        writer.rollback()
    assert preparing.wait(300) and returned < preparing.finished_at
    status, start_col, timer = handler(blocks, "study_status")()
    assert status.visible is False and start_col.visible and timer.active is False
    started = handler(blocks, "study_start")("")
    assert "keep this code" in started[1] and all(Path(p).exists() for p in started[-2:])  # the anchors, fresh copies
    first = handler(blocks, "study_begin")(started[0])
    assert "Trial 1 of" in first[5] and read_image(first[6]).shape[:2] == (64, 64)
    said = capsys.readouterr().out
    lines = [line for line in said.splitlines() if line.startswith("Rating study: rendering stimuli")]
    assert lines == [f"Rating study: rendering stimuli {i}/6" for i in range(1, 7)]
    assert "Rating study: rendering 6 stimuli in the background" in said and "Rating study: stimuli ready" in said


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (tests/run.sh installs it on CI)")
def test_the_rate_tab_says_the_study_is_being_prepared_then_starts(tmp_path):
    """In a browser: app.py serves while its study's stimuli are held back, the Rate tab says so, and it shows the
    start button by itself once they are built."""
    from playwright.sync_api import sync_playwright

    config = write_study(tmp_path, "pc")
    log = tmp_path / "app.log"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        with another_writer(tmp_path / "pc.db") as writer, running_app("--study", str(config), log=log,
                                                                     timeout=480) as url:
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("tab", name="Rate").click()
            page.get_by_text("The study is being prepared").wait_for(timeout=20_000)
            assert "rendering stimuli 0/6" in page.locator("#study-preparing").inner_text()
            assert not page.locator("#rater-start").is_visible()
            writer.rollback()  # the build goes on
            page.locator("#rater-start").wait_for(state="visible", timeout=120_000)
            assert not page.locator("#study-preparing").is_visible()
            page.locator("#rater-start").click()
            page.locator("#rater-resume").get_by_text("keep this code").wait_for(timeout=30_000)
            page.wait_for_function("() => { const i = document.querySelector('#anchor-best img'); "
                                   "return i && i.naturalWidth > 0; }", timeout=30_000)
        browser.close()
    assert "Rating study: stimuli ready" in log.read_text()
