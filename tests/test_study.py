"""The rating study end to end on real storage: simulated raters, screening, reports, concurrency, import/export."""
import os
import threading

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy import stats

from study import db
from study.__main__ import main as study_cli
from study.config import ConfigError, load_config
from study.report import build_report, write
from study.schedule import Study
from study.stimuli import GOLD, build
from study.votes_io import ImportError_, export_votes, import_votes

TRUTH = {"reference": 4.6, "mild": 3.7, "unsharp": 2.8, "medium": 1.9, GOLD: 1.0}

CONFIG = """
name = "test-study"
seed = 3
votes_per_pair = 4
trials_per_rater = {trials}
gold_share = {gold}
repeat_share = {repeat}
crop = 96

[[images]]
name = "astronaut"
path = "skimage:astronaut"

[[images]]
name = "coffee"
path = "skimage:coffee"

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


def make_study(tmp_path, trials=20, gold=0.15, repeat=0.15, url=None):
    path = tmp_path / "study.toml"
    path.write_text(CONFIG.format(trials=trials, gold=gold, repeat=repeat))
    cfg = load_config(path)
    engine = db.connect(url or f"sqlite:///{tmp_path / 'study.db'}")
    build(cfg, engine, tmp_path / "stimuli")
    return cfg, engine, Study(cfg, engine)


def rate_session(study, rater, policy, seed):
    """Play one rater's whole session through the app layer; policy(trial, rng) -> (score_a, score_b, preference)."""
    rng = np.random.default_rng(seed)
    study.start(rater, seed=seed)
    while (t := study.current(rater)) is not None:
        assert study.answer(rater, t.index, *policy(t, rng))


def honest(t, rng):
    la, lb = TRUTH[t.condition_a] + rng.normal(0, 0.4), TRUTH[t.condition_b] + rng.normal(0, 0.4)
    pref = "none" if abs(la - lb) < 0.3 else ("a" if la > lb else "b")
    return int(np.clip(round(la), 1, 5)), int(np.clip(round(lb), 1, 5)), pref


def random_clicker(t, rng):
    return int(rng.integers(1, 6)), int(rng.integers(1, 6)), str(rng.choice(["a", "b", "none"]))


def constant_clicker(t, rng):
    return 3, 3, "none"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    cfg, engine, study = make_study(tmp)
    for i in range(12):
        rate_session(study, f"honest{i}", honest, seed=i)
    rate_session(study, "random", random_clicker, seed=100)
    rate_session(study, "constant", constant_clicker, seed=101)
    return cfg, engine, study, build_report(engine)


def test_every_rater_got_the_planned_trials_and_no_condition_name_leaks(finished):
    cfg, engine, study, _ = finished
    votes = export_votes(engine)
    assert votes.groupby("rater").size().eq(study.total).all() and votes.rater.nunique() == 14
    assert (votes.kind == "gold").sum() == 14 * study.n_gold and (votes.kind == "repeat").sum() == 14 * study.n_repeat
    with engine.connect() as conn:
        ids = [r.id for r in conn.execute(sa.select(db.stimuli))]
    assert all(len(i) == 16 and not any(c in i for c in TRUTH) for i in ids)


def test_scheduling_fills_least_voted_pairs_evenly(finished):
    _, engine, study, _ = finished
    main = export_votes(engine).query("kind == 'main'")
    counts = main.apply(lambda r: (r.image, *sorted((r.condition_a, r.condition_b))), axis=1).value_counts()
    assert len(counts) == len(study.pairs)  # every pair got votes
    assert counts.max() - counts.min() <= 1  # least-voted first keeps them level


def test_screening_rejects_exactly_the_bad_raters(finished):
    raters = finished[3]["raters"].set_index("rater")
    assert set(raters.index[~raters.accepted]) == {"random", "constant"}
    assert "zero variance" in raters.loc["constant", "reasons"]
    assert "gold" in raters.loc["random", "reasons"]


def test_mos_ranking_matches_truth_and_ci_matches_scipy(finished):
    _, engine, _, report = finished
    table = report["conditions_screened"]
    order = [c for c in sorted(TRUTH, key=TRUTH.get, reverse=True) if c != GOLD]
    assert list(table.condition) == order
    assert GOLD not in set(table.condition)
    votes = export_votes(engine)
    votes = votes[(votes.kind == "main") & ~votes.rater.isin(["random", "constant"])]
    scores = pd.concat([votes.score_a[votes.condition_a == "mild"], votes.score_b[votes.condition_b == "mild"]])
    lo, hi = stats.t.interval(0.95, len(scores) - 1, loc=scores.mean(), scale=stats.sem(scores))
    row = table.set_index("condition").loc["mild"]
    assert row.MOS == pytest.approx(scores.mean()) and row.CI95_lo == pytest.approx(lo) and row.CI95_hi == pytest.approx(hi)
    assert row.votes == len(scores)


def test_bradley_terry_and_metrics_agree_with_truth(finished):
    report = finished[3]
    t = report["conditions_screened"].set_index("condition")
    assert list(t.bt.sort_values(ascending=False).index) == list(t.index)
    assert (t.bt_lo <= t.bt).all() and (t.bt <= t.bt_hi).all()
    assert t.loc["reference", "ssim"] == pytest.approx(1.0)
    assert t.loc["mild", "ssim"] > t.loc["medium", "ssim"]
    assert t.loc["reference", "DMOS"] == pytest.approx(5.0)
    corr = report["correlation_screened"].set_index("metric")
    assert corr.loc["ssim", "spearman"] > 0.5


def test_report_files(finished, tmp_path):
    paths = write(finished[3], tmp_path)
    names = {p.name for p in paths}
    assert {"conditions_all.csv", "conditions_screened.csv", "raters.csv", "report.md", "report.html"} <= names
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table" in html
    assert pd.read_csv(tmp_path / "conditions_all.csv").votes.sum() > 0


def test_refresh_resumes_and_double_submit_stores_once(tmp_path, db_url):
    cfg, engine, study = make_study(tmp_path, trials=6, url=db_url)
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
    cfg, engine, study = make_study(tmp_path, trials=50, gold=0.0, repeat=0.0, url=db_url)
    errors = []

    def rater(i):
        try:
            rng = np.random.default_rng(i)
            study.start(f"r{i}")
            while (t := study.current(f"r{i}")) is not None:
                vote = honest(t, rng)
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
    assert len(votes) == 20 * 50 and not votes.duplicated(["rater", "trial"]).any()
    assert votes.groupby("rater").size().eq(50).all()


def test_import_and_export_votes(tmp_path):
    engine = db.connect(f"sqlite:///{tmp_path / 'imp.db'}")
    good = tmp_path / "votes.csv"
    good.write_text("rater,image,condition_a,condition_b,score_a,score_b,preference\n"
                    "w1,img1,teacher,student,5,4,a\nw1,img1,student,degraded,4,2,A\nw2,img2,teacher,degraded,3,3,none\n")
    assert import_votes(engine, good) == 3
    out = export_votes(engine)
    assert list(out.preference) == ["a", "a", "none"] and list(out.trial) == [0, 1, 0]
    bad = tmp_path / "bad.csv"
    bad.write_text("rater,image,condition_a,condition_b,score_a,score_b,preference\n"
                   "w3,img1,teacher,student,5,4,a\nw3,img1,teacher,student,7,4,a\n")
    with pytest.raises(ImportError_, match=r"bad.csv:3: scores must be 1-5"):
        import_votes(engine, bad)
    assert len(export_votes(engine)) == 3  # nothing half-written
    (tmp_path / "cols.csv").write_text("rater,image,score\nx,y,3\n")
    with pytest.raises(ImportError_, match="cols.csv:1: missing column"):
        import_votes(engine, tmp_path / "cols.csv")


def test_cli_report_and_export(finished, tmp_path, capsys):
    engine = finished[1]
    url = str(engine.url)
    assert study_cli(["report", "--db", url, "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").exists()
    assert study_cli(["export", "--db", url, "--out", str(tmp_path / "v.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "v.csv")) == len(export_votes(engine))


@pytest.mark.parametrize("text, match", [
    ("name = 'x'\n[[images]\n", r"study.toml: malformed TOML.*line 2"),
    ("[[images]]\nname = 'a'\npath = 'missing.png'\n", r"study.toml:3: image 'a': file not found"),
    ("[[images]]\nname='a'\npath='skimage:astronaut'\n[[conditions]]\nname = 'x'\nkind = 'magic'\n"
     "[[conditions]]\nname='r'\nkind='reference'\n", r"study.toml:6: conditions\[0\] \(.x.\): kind must be"),
    ("votes_per_pair = 'many'\n", r"study.toml:1: votes_per_pair must be a whole number"),
    ("colour = 1\n", r"study.toml:1: unknown setting 'colour'"),
])
def test_bad_study_files_name_file_and_line(tmp_path, text, match):
    (tmp_path / "study.toml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(tmp_path / "study.toml")


def test_admin_view_needs_the_password_and_shows_the_report(finished, monkeypatch):
    from study.ui import admin_view

    engine = finished[1]
    monkeypatch.delenv("STUDY_ADMIN_PASSWORD", raising=False)
    with pytest.raises(PermissionError, match="off"):
        admin_view(engine, "anything")
    monkeypatch.setenv("STUDY_ADMIN_PASSWORD", "s3cret")
    with pytest.raises(PermissionError, match="Wrong"):
        admin_view(engine, "guess")
    text, table, files = admin_view(engine, "s3cret")
    assert "**14** raters (14 finished)" in text
    assert list(table.condition)[0] == "reference"
    assert any(f.endswith("conditions_screened.csv") for f in files)
