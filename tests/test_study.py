"""The rating study end to end on real storage: simulated raters in every design, screening, reports, scheduling
rules, concurrency, access tokens and the admin page."""
import datetime as dt
import os
import threading

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import statsmodels.api as sm
from scipy import stats

from study import access, db
from study.__main__ import main as study_cli
from study.config import ANCHOR_BEST, ANCHOR_WORST, GOLD, load_config
from study.report import build_report, write
from study.schedule import Study, StudyFull, TooFast
from study.stimuli import build
from study.votes_io import export_votes

TRUTH = {"reference": 4.6, "mild": 3.7, "unsharp": 2.8, "medium": 1.9, GOLD: 1.0}
LEVEL = {**TRUTH, ANCHOR_BEST: 4.8, ANCHOR_WORST: 1.0}  # what a rater sees, the practice anchors included
IMAGE_EFFECT = {"astronaut": 0.2, "coffee": -0.2, "rocket": 0.0}  # every rater sees the same image effect

CONFIG = """
name = "test-study"
design = "{design}"
seed = 3
votes_per_pair = {votes}
trials_per_rater = {trials}
gold_share = {gold}
repeat_share = {repeat}
repeat_gap = 3
min_response_ms = {min_ms}
training_trials = {training}
crop = 96
contrasts = [["mild", "unsharp"], ["mild", "medium"]]

[[images]]
name = "astronaut"
path = "skimage:astronaut"

[[images]]
name = "coffee"
path = "skimage:coffee"

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
name = "unsharp"
kind = "unsharp"
preset = "medium"

[[conditions]]
name = "medium"
kind = "degraded"
preset = "medium"
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each storage test runs on SQLite and, where tests/postgres.sh started one (SHARPKD_TEST_POSTGRES), PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    url = os.environ.get("SHARPKD_TEST_POSTGRES")
    if not url:
        pytest.skip("no PostgreSQL for tests: tests/run.sh starts one on CI (SHARPKD_TEST_POSTGRES)")
    engine = sa.create_engine(url)
    db.metadata.drop_all(engine)  # a clean schema for each test
    engine.dispose()
    return url


def make_study(tmp_path, design="acr-hr", trials=20, gold=0.15, repeat=0.15, votes=10_000, min_ms=0, url=None,
               training=2):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "study.toml"
    path.write_text(CONFIG.format(design=design, trials=trials, gold=gold, repeat=repeat, votes=votes, min_ms=min_ms,
                                  training=training))
    cfg = load_config(path)
    engine = db.connect(url or f"sqlite:///{tmp_path / 'study.db'}")
    build(cfg, engine, tmp_path / "stimuli")
    return cfg, engine, Study(cfg, engine)


def rate_session(study, rater, policy, seed):
    """Play one rater's whole session through the app layer; policy(design, trial, rng) -> the design's answer."""
    rng = np.random.default_rng(seed)
    study.start(rater, seed=seed)
    while (t := study.current(rater)) is not None:
        assert study.answer(rater, t.index, *policy(study.cfg.design, t, rng), display="1280x800@2")


def _score(x):
    return int(np.clip(round(x), 1, 5))


def honest(design, t, rng, sign=1):
    bias = IMAGE_EFFECT[t.image]
    la = LEVEL[t.condition_a] + bias + rng.normal(0, 0.4)
    lb = LEVEL.get(t.condition_b, 0) + bias + rng.normal(0, 0.4)
    if sign < 0:  # inverted: 5 for bad, 1 for good
        la, lb = 6 - la, 6 - lb
    pref = "none" if abs(la - lb) < 0.3 else ("a" if la > lb else "b")
    if design == "dcr":
        return _score(5 - (TRUTH["reference"] - la) * sign), None, None
    return {"pc": (None, None, pref), "ab": (_score(la), _score(lb), pref), "acr-hr": (_score(la), None, None)}[design]


def inverted(design, t, rng):
    return honest(design, t, rng, sign=-1)


def random_clicker(design, t, rng):
    a, b, p = int(rng.integers(1, 6)), int(rng.integers(1, 6)), str(rng.choice(["a", "b", "none"]))
    return {"pc": (None, None, p), "ab": (a, b, p)}.get(design, (a, None, None))


def constant_clicker(design, t, rng):
    return {"pc": (None, None, "a"), "ab": (3, 3, "none")}.get(design, (3, None, None))


def run_study(tmp, design):
    cfg, engine, study = make_study(tmp, design)
    for i in range(12):
        rate_session(study, f"honest{i}", honest, seed=i)
    rate_session(study, "random", random_clicker, seed=100)
    rate_session(study, "constant", constant_clicker, seed=101)
    rate_session(study, "inverted", inverted, seed=102)
    return cfg, engine, study, build_report(engine)


@pytest.fixture(scope="module")
def acr(tmp_path_factory):
    return run_study(tmp_path_factory.mktemp("acr"), "acr-hr")


@pytest.fixture(scope="module")
def pc(tmp_path_factory):
    return run_study(tmp_path_factory.mktemp("pc"), "pc")


def test_every_rater_got_the_planned_trials_and_no_condition_name_leaks(acr):
    cfg, engine, study, _ = acr
    votes = export_votes(engine)
    assert votes.groupby("rater").size().eq(study.total).all() and votes.rater.nunique() == 15
    assert (votes.kind == "gold").sum() == 15 * study.n_gold and (votes.kind == "repeat").sum() == 15 * study.n_repeat
    assert (votes.kind == "training").sum() == 15 * 2 and (votes.trial[votes.kind == "training"] < 2).all()
    assert votes.condition_b.isna().all() and votes.preference.isna().all()  # acr-hr: one picture, one score
    assert (votes.screen_w == 1280).all() and (votes.pixel_ratio == 2.0).all()  # display metadata stored
    with engine.connect() as conn:
        stim = pd.read_sql(sa.select(db.stimuli), conn)
    assert all(len(i) == 16 and not any(c in i for c in TRUTH) for i in stim.id)
    assert all(os.path.basename(p) == f"{i}.png" for i, p in zip(stim.id, stim.path))


def test_anchors_come_from_training_photos_and_never_appear_in_trials(acr):
    _, engine, study, _ = acr
    with engine.connect() as conn:
        stim = pd.read_sql(sa.select(db.stimuli), conn)
    anchors = stim[stim.role == "anchor"]
    assert set(anchors.image) == {"rocket"} and set(anchors.condition) == {ANCHOR_BEST, ANCHOR_WORST}
    votes = export_votes(engine)
    rated = votes[votes.kind != "training"]
    shown = set(study.stimulus[(v.image, v.condition_a)] for v in rated.itertuples())
    assert shown and not shown & set(anchors.id)
    practice = votes[votes.kind == "training"]  # the practice trials show the anchors, on the training photo only
    assert set(practice.image) == {"rocket"} and set(practice.condition_a) == {ANCHOR_BEST, ANCHOR_WORST}


def test_scheduling_fills_least_voted_units_evenly_and_spaces_repeats(acr):
    _, engine, study, _ = acr
    votes = export_votes(engine)
    counts = votes.query("kind == 'main'").groupby(["image", "condition_a"]).size()
    assert len(counts) == len(study.units) == 8  # acr-hr: every (image, condition), the reference included
    assert counts.max() - counts.min() <= 1
    rep = votes.query("kind == 'repeat'")
    assert (rep.trial - rep.repeat_of > study.cfg.repeat_gap).all()
    orig = votes.set_index(["rater", "trial"])
    assert all(orig.loc[(r.rater, r.repeat_of)].condition_a == r.condition_a for r in rep.itertuples())


def test_screening_rejects_exactly_the_bad_raters(acr):
    raters = acr[3]["raters"].set_index("rater")
    assert set(raters.index[~raters.accepted]) == {"random", "constant", "inverted"}
    assert "zero variance" in raters.loc["constant", "reasons"]
    assert "P.913 correlation" in raters.loc["inverted", "reasons"]  # 5 for bad, 1 for good
    assert raters.loc["inverted", "r1"] < 0 and (raters.r1[raters.accepted] > 0.75).all()
    assert raters[["bias", "inconsistency"]].notna().all().all()
    assert raters.loc["random", "inconsistency"] > raters.inconsistency[raters.accepted].max()


def test_mos_ranking_matches_truth_and_ci_is_rater_clustered(acr):
    _, engine, _, report = acr
    table = report["conditions_screened"]
    order = [c for c in sorted(TRUTH, key=TRUTH.get, reverse=True) if c != GOLD]
    assert list(table.condition) == order and GOLD not in set(table.condition)
    votes = export_votes(engine)
    votes = votes[(votes.kind == "main") & votes.rater.str.startswith("honest")]
    mild = votes[votes.condition_a == "mild"]
    fit = sm.OLS(mild.score_a.astype(float).to_numpy(), np.ones(len(mild))).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(mild.rater)[0]})  # independent: statsmodels CR1
    half = stats.t.ppf(0.975, mild.rater.nunique() - 1) * fit.bse[0]
    row = table.set_index("condition").loc["mild"]
    assert row.MOS == pytest.approx(mild.score_a.mean()) and row.votes == len(mild)
    assert row.CI95_lo == pytest.approx(fit.params[0] - half) and row.CI95_hi == pytest.approx(fit.params[0] + half)
    naive = stats.sem(mild.score_a.astype(float)) * stats.t.ppf(0.975, len(mild) - 1)
    assert half != pytest.approx(naive, rel=0.01)  # not the per-vote t-interval


def test_dmos_per_rater_and_source(acr):
    t = acr[3]["conditions_screened"].set_index("condition")
    assert t.loc["reference", "DMOS"] == pytest.approx(5.0)
    assert t.DMOS.is_monotonic_decreasing and (t.DMOS_lo <= t.DMOS).all() and (t.DMOS <= t.DMOS_hi).all()
    assert t.loc["reference", "ssim"] == pytest.approx(1.0) and t.loc["mild", "ssim"] > t.loc["medium", "ssim"]
    assert acr[3]["correlation_screened"].set_index("metric").loc["ssim", "spearman"] > 0.5


def test_paired_comparison_bradley_terry_and_contrasts(pc):
    _, engine, _, report = pc
    votes = export_votes(engine)
    assert votes.score_a.isna().all() and votes.preference.notna().all()
    t = report["conditions_screened"]
    assert list(t.condition) == ["reference", "mild", "unsharp", "medium"]  # sorted by strength, as the truth
    assert (t.bt_lo <= t.bt).all() and (t.bt <= t.bt_hi).all()
    con = report["contrasts_screened"].set_index(["a", "b"])
    assert list(con.index) == [("mild", "unsharp"), ("mild", "medium")]  # the study's contrasts
    assert (con["diff"] > 0).all() and (con.p_holm >= con.p).all() and (con.p_holm < 0.05).all()
    raters = report["raters"].set_index("rater")
    assert not raters.loc["random", "accepted"] and raters.loc["honest0", "accepted"]


def test_report_files(acr, pc, tmp_path):
    for name, (_, _, _, report) in {"acr": acr, "pc": pc}.items():
        paths = write(report, tmp_path / name)
        assert {"conditions_all.csv", "conditions_screened.csv", "raters.csv", "power_screened.csv", "report.md",
                "report.html"} <= {p.name for p in paths}
        html = (tmp_path / name / "report.html").read_text()
        assert html.index("id='summary'") < html.index("<img") < html.index("conditions screened")
        assert html.index("conditions screened") < html.index("conditions all")  # screened results first
        assert "data:image/png;base64," in html and "Column keys" in html and "power screened" in html
        assert "http" not in html.replace("http-equiv", "")  # self-contained
    power = acr[3]["power_screened"]
    assert (power["needed_for_±0.1"] > power["needed_for_±0.2"] * 3).all()
    assert "a 60/40 preference" in pc[3]["power_screened"].what.iloc[-1]
    assert "Preferred most: **reference**" in (tmp_path / "pc" / "report.md").read_text()


def test_every_design_runs_and_ab_scores_feed_no_dmos(tmp_path):
    for design in ("dcr", "ab"):
        cfg, engine, study = make_study(tmp_path / design, design, trials=12)
        for i in range(6):
            rate_session(study, f"h{i}", honest, seed=i)
        t = build_report(engine)["conditions_screened"].set_index("condition")
        if design == "dcr":
            assert "reference" not in t.index and t.MOS.is_monotonic_decreasing  # rated against the reference
            assert set(export_votes(engine).query("kind != 'training'").condition_b) == {"reference"}
        else:
            assert "DMOS" not in t and "bt" in t and t.loc["reference", "MOS"] > t.loc["medium", "MOS"]
    write(build_report(engine), tmp_path / "ab" / "r")
    assert "relative to the partner" in (tmp_path / "ab" / "r" / "report.md").read_text()


def test_answers_must_fit_the_design_and_come_after_the_minimum_time(tmp_path):
    cfg, engine, study = make_study(tmp_path, "pc", trials=4, min_ms=1500)
    study.start("ann")
    t = study.current("ann")
    with pytest.raises(ValueError, match="takes no score_a"):
        study.answer("ann", t.index, 4, None, "a")
    with pytest.raises(TooFast):
        study.answer("ann", t.index, None, None, "a")
    with engine.begin() as conn:  # as if the picture had been on screen for two seconds
        conn.execute(db.trials.update().values(shown=db.now() - dt.timedelta(seconds=2)))
    assert study.answer("ann", t.index, None, None, "a") is True


def test_abandoned_trials_go_back_to_the_pool_and_the_study_stops_when_full(tmp_path):
    cfg, engine, study = make_study(tmp_path, "acr-hr", trials=8, gold=0, repeat=0, votes=1, training=0)
    study.start("idle")
    idle = study.current("idle")  # handed out, never answered
    study.start("busy")
    seen = []
    while (t := study.current("busy")) is not None:
        seen.append((t.image, t.condition_a))
        study.answer("busy", t.index, 3)
    assert (idle.image, idle.condition_a) not in seen and len(seen) == 7  # the idle rater's unit stays theirs
    with engine.begin() as conn:  # ... until the timeout passes
        conn.execute(db.trials.update().where(db.trials.c.rater == "idle").values(
            shown=db.now() - dt.timedelta(seconds=cfg.assignment_timeout_s + 1)))
    study.start("late")
    t = study.current("late")
    assert (t.image, t.condition_a) == (idle.image, idle.condition_a)
    study.answer("late", t.index, 4)
    assert study.is_full() and study.current("late") is None and study.completion_code("late")
    with pytest.raises(StudyFull):
        study.start("newcomer")


def test_refresh_resumes_and_double_submit_stores_once(tmp_path, db_url):
    cfg, engine, study = make_study(tmp_path, "ab", trials=6, url=db_url)
    study.start("ann")
    first = study.current("ann")
    assert study.current("ann") == first  # a refresh shows the same trial
    assert study.answer("ann", first.index, 4, 2, "a") is True
    assert study.answer("ann", first.index, 4, 2, "a") is False  # double click
    again = Study(cfg, engine)  # a restarted server
    nxt = again.current("ann")
    assert nxt.index == first.index + 1 and again.progress("ann") == (1, study.total)
    with pytest.raises(ValueError):
        again.answer("ann", nxt.index, 6, 2, "a")
    with pytest.raises(KeyError):
        again.answer("ann", 99, 3, 3, "none")


def test_concurrent_raters_lose_no_vote(tmp_path, db_url):
    cfg, engine, study = make_study(tmp_path, "pc", trials=50, gold=0.0, repeat=0.0, url=db_url)
    errors = []

    def rater(i):
        try:
            rng = np.random.default_rng(i)
            study.start(f"r{i}")
            while (t := study.current(f"r{i}")) is not None:
                vote = honest("pc", t, rng)
                study.answer(f"r{i}", t.index, *vote)
                if t.index % 7 == 0:
                    study.answer(f"r{i}", t.index, *vote)  # a double click
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=rater, args=(i,)) for i in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    votes = export_votes(engine)
    assert len(votes) == 20 * study.total and not votes.duplicated(["rater", "trial"]).any()
    assert votes.groupby("rater").size().eq(study.total).all() and study.total == 52


def test_tokens_are_signed_and_imported_ids_cannot_be_taken_over(tmp_path, monkeypatch):
    cfg, engine, study = make_study(tmp_path, "pc", trials=2)
    secret = access.server_secret(engine)
    assert secret == access.server_secret(engine) and len(secret) >= 32  # drawn once, kept
    token = access.sign(secret, "r123")
    assert access.verify(secret, token) == "r123"
    for forged in ("r123", "r123.", token[:-1] + ("A" if token[-1] != "A" else "B"), "r124" + token[4:],
                   access.sign(b"another secret", "r123"), ""):
        assert access.verify(secret, forged) is None
    monkeypatch.setenv("STUDY_SECRET", "from-the-environment")
    assert access.server_secret(engine) == b"from-the-environment"
    with engine.begin() as conn:
        conn.execute(db.raters.insert().values(id="w1", seed=0, created=db.now(), source="import"))
    with pytest.raises(ValueError, match="imported"):
        study.start("w1")


def test_cli_links_report_and_export(acr, tmp_path, capsys):
    cfg, engine, _, _ = acr
    url = str(engine.url)
    assert study_cli(["links", str(cfg.path), "--db", url, "-n", "3", "--url", "https://x.test/"]) == 0
    links = capsys.readouterr().out.split()
    secret = access.server_secret(engine)
    assert len(links) == 3 and all(access.verify(secret, link.split("token=")[1]) for link in links)
    assert study_cli(["report", "--db", url, "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").exists()
    assert study_cli(["export", "--db", url, "--out", str(tmp_path / "v.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "v.csv")) == len(export_votes(engine))


@pytest.mark.parametrize("command", ["build", "serve", "links", "report", "import-votes", "export"])
def test_every_command_documents_its_options(command, capsys):
    with pytest.raises(SystemExit):
        study_cli([command, "--help"])
    text = capsys.readouterr().out
    options = [w for w in text.split() if w.startswith("--") and w != "--help"]
    assert options and text.count("--db") >= 1
    for line in text.splitlines():
        words = line.split()
        if words and words[0].startswith("--") and words[0] != "--help":
            assert len(words) > 2 or "default" in line, f"{command}: {line!r} has no description"


def test_admin_view_needs_the_password_and_is_throttled(acr, monkeypatch):
    from study import ui

    engine = acr[1]
    monkeypatch.setattr(ui, "ADMIN_THROTTLE", access.Throttle(limit=3, window=60))
    monkeypatch.delenv("STUDY_ADMIN_PASSWORD", raising=False)
    with pytest.raises(PermissionError, match="off"):
        ui.admin_view(engine, "anything")
    monkeypatch.setenv("STUDY_ADMIN_PASSWORD", "s3cret")
    text, table, files = ui.admin_view(engine, "s3cret", "10.0.0.1")
    assert "**15** raters (15 finished)" in text and list(table.condition)[0] == "reference"
    assert any(f.endswith("conditions_screened.csv") for f in files)
    for _ in range(3):
        with pytest.raises(PermissionError, match="Wrong"):
            ui.admin_view(engine, "guess", "10.0.0.2")
    with pytest.raises(PermissionError, match="Too many"):  # even the right password, unchecked
        ui.admin_view(engine, "s3cret", "10.0.0.2")
    assert ui.admin_view(engine, "s3cret", "10.0.0.3")[0] == text  # other clients are not locked out


DESIGN_USERS = ("config", "schedule", "screening", "report", "ui", "votes_io")  # modules that ask a design


def test_callers_ask_the_design_and_name_none():
    """Each design is one class in study/designs.py (a registry, name -> instance); its users look it up once
    (DESIGNS[cfg.design]) and ask it, so no design's name appears in their code, and the study file accepts exactly
    the registry's names. The designs need no ML stack: the statistics read them."""
    import ast
    from pathlib import Path

    from study import config, designs
    from test_imports import fresh_modules

    assert set(designs.DESIGNS) == {"pc", "ab", "acr-hr", "dcr"} and config.DESIGNS is designs.DESIGNS
    assert all(isinstance(d, designs.Design) and d.name == n for n, d in designs.DESIGNS.items())
    assert all(len(n) <= db.votes.c.design.type.length for n in designs.DESIGNS)  # fits the votes' column
    root = Path(__file__).resolve().parent.parent / "study"
    for module in DESIGN_USERS:
        tree = ast.parse((root / f"{module}.py").read_text())
        named = sorted({n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in designs.DESIGNS})
        assert not named, f"study/{module}.py names the design(s) {named}: ask study.designs instead"
    loaded = fresh_modules("import study.designs")
    assert "study.designs" in loaded and not {"torch", "kd.sharpen", "gradio"} & set(loaded)


def test_a_new_design_is_one_class(tmp_path, monkeypatch):
    """ACR without a hidden reference, added as one class to the registry (what a new design in study/designs.py
    is): the study file takes it, trials are scheduled, answers checked, gold screened, the report scores it (MOS, no
    DMOS), votes import, and the Rate tab shows its words, with no other file changed."""
    import gradio as gr

    from study import designs
    from study.ui import render_rating
    from study.votes_io import import_votes

    class ACR(designs.Design):
        name = "acr"
        instructions = "One picture at a time: rate its quality from 1 (bad) to 5 (excellent)."
        anchors = ("The range to expect:", "Best (5)", "Worst (1)")

    monkeypatch.setitem(designs.DESIGNS, "acr", ACR())
    cfg, engine, study = make_study(tmp_path / "acr", "acr", trials=10)
    assert cfg.design == "acr" and len(study.units) == 2 * 4  # every (image, condition), the reference rated too

    def policy(design, t, rng):
        return _score(LEVEL[t.condition_a] + IMAGE_EFFECT[t.image] + rng.normal(0, 0.4)), None, None

    for i in range(6):
        rate_session(study, f"h{i}", policy, seed=i)
    rate_session(study, "fails-gold", lambda d, t, rng: (5, None, None), seed=9)
    with pytest.raises(ValueError, match="design 'acr' takes no preference"):
        study.check_answer(3, None, "a")
    report = build_report(engine, boots=50)
    table = report["conditions_all"].set_index("condition")
    assert list(table.index) == ["reference", "mild", "unsharp", "medium"] and "DMOS" not in table and "bt" not in table
    raters = report["raters"].set_index("rater")
    assert "gold" in raters.loc["fails-gold", "reasons"] and raters.loc["h0", "accepted"]
    votes = export_votes(engine)
    assert set(votes.design) == {"acr"} and (votes.kind == "gold").any()
    votes.to_csv(tmp_path / "votes.csv", index=False)
    other = db.connect(f"sqlite:///{tmp_path / 'other.db'}")
    build(cfg, other, tmp_path / "other")
    assert import_votes(other, tmp_path / "votes.csv") == len(votes)
    with gr.Blocks() as blocks:
        render_rating(cfg, engine, blocks)
    shown = str(blocks.get_config_file()["components"])
    assert ACR.instructions in shown and "Quality of the picture" in shown
