"""Study files and vote files: strict config errors with file and line, lossless and idempotent CSV round trip."""
import pandas as pd
import pytest
import sqlalchemy as sa

from study import db
from study.config import ConfigError, load_config
from study.votes_io import EXPORT, ImportError_, export_votes, import_votes
from test_study import db_url, honest, make_study, rate_session  # noqa: F401 (db_url is a fixture)

HEADER = "rater,image,condition_a,condition_b,score_a,score_b,preference\n"


@pytest.fixture(scope="module")
def rated(tmp_path_factory):
    """A small ab study (scores and preferences), with gold and repeat trials and display metadata."""
    cfg, engine, study = make_study(tmp_path_factory.mktemp("rated"), "ab", trials=8)
    for i in range(3):
        rate_session(study, f"h{i}", honest, seed=i)
    return cfg, engine


def test_export_import_round_trip_is_lossless_and_idempotent(rated, tmp_path, db_url):  # noqa: F811
    cfg, engine = rated
    out = export_votes(engine)
    assert list(out.columns) == list(EXPORT) and set(out.kind) == {"training", "main", "gold", "repeat"}
    path = tmp_path / "votes.csv"
    out.to_csv(path, index=False)
    target = db.connect(db_url)
    from study.stimuli import build

    build(cfg, target, tmp_path / "stimuli")  # the same study, a fresh database
    assert import_votes(target, path) == len(out)
    back = export_votes(target)
    pd.testing.assert_frame_equal(back.drop(columns="created"), out.drop(columns="created"))
    assert (back.created == out.created).all()
    assert back.repeat_of.notna().sum() > 0 and back.response_ms.notna().all() and (back.pixel_ratio == 2).all()
    assert import_votes(target, path) == 0  # the same file again: nothing doubles
    assert len(export_votes(target)) == len(out)
    with target.connect() as conn:
        sources = dict(conn.execute(sa.select(db.raters.c.id, db.raters.c.source)).all())
    assert set(sources.values()) == {"import"}


def test_platform_columns_stay_accepted(rated, tmp_path):
    _, engine = rated
    path = tmp_path / "platform.csv"
    path.write_text(HEADER + "w1,astronaut,reference,medium,5,1,A\nw1,coffee,mild,medium,4,2,a\n"
                    "w2,coffee,reference,mild,4,4,none\n")
    assert import_votes(engine, path) == 3
    w = export_votes(engine).query("rater in ['w1', 'w2']")
    assert list(w.trial) == [0, 1, 0] and list(w.preference) == ["a", "a", "none"] and set(w.kind) == {"main"}
    assert import_votes(engine, path) == 0  # keyed by rater and position in the file
    path.write_text(HEADER + "w1,astronaut,reference,medium,4,1,a\n")
    with pytest.raises(ImportError_, match=r"platform.csv:2: rater 'w1' trial 0 already has a different vote"):
        import_votes(engine, path)


def test_imported_rater_and_app_rater_do_not_collide(rated, tmp_path):
    cfg, engine = rated
    from study.schedule import Study

    study = Study(cfg, engine)
    path = tmp_path / "v.csv"
    path.write_text("rater,trial,image,condition_a,condition_b,score_a,score_b,preference\n"
                    "h0,999,astronaut,reference,medium,5,1,a\n")
    with pytest.raises(ImportError_, match="rating in the app"):  # h0 rates in the app: no votes slipped in ...
        import_votes(engine, path)
    path.write_text(HEADER + "imp1,astronaut,reference,medium,5,1,a\n")
    import_votes(engine, path)
    with pytest.raises(ValueError, match="imported"):  # ... and an imported id cannot start rating in the app
        study.start("imp1")


@pytest.mark.parametrize("body, match", [
    ("w3,astronaut,reference,student,5,4,a\n", r":2: unknown condition 'student'"),
    ("w3,moon,reference,mild,5,4,a\n", r":2: unknown image 'moon'"),
    ("w3,astronaut,reference,mild,7,4,a\n", r":2: score_a must be a whole number in \[1, 5\]"),
    ("w3,astronaut,reference,mild,1e400,4,a\n", r":2: score_a must be a whole number"),
    ("w3,astronaut,reference,mild,4.5,4,a\n", r":2: score_a must be a whole number"),
    ("w3,astronaut,reference,mild,4,4,maybe\n", r":2: preference must be one of a, b, none"),
    ("w3,astronaut,reference,mild,4,,a\n", r":2: design 'ab' needs score_b"),
    ("w3,astronaut,mild,mild,4,3,a\n", r":2: condition_a and condition_b are the same"),
    ("x" * 129 + ",astronaut,reference,mild,4,3,a\n", r":2: rater is longer than 128 characters"),
    ("w3,astronaut,reference,mild,4,3,a,extra\n", r":2: more values than columns"),
])
def test_bad_vote_files_name_file_and_line_and_store_nothing(rated, tmp_path, body, match):
    _, engine = rated
    before = len(export_votes(engine))
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "w3,astronaut,reference,mild,5,4,a\n" + body.replace(":2:", ":3:"))
    with pytest.raises(ImportError_, match="bad.csv" + match.replace(":2:", ":3:")):
        import_votes(engine, path)
    assert len(export_votes(engine)) == before  # nothing half-written


def test_vote_file_columns_and_encodings(rated, tmp_path):
    _, engine = rated
    (tmp_path / "cols.csv").write_text("rater,image,score\nx,y,3\n")
    with pytest.raises(ImportError_, match="cols.csv:1: missing column"):
        import_votes(engine, tmp_path / "cols.csv")
    ms = tmp_path / "ms.csv"
    ms.write_text(HEADER.strip() + ",response_ms\nw9,astronaut,reference,mild,5,4,a,abc\n")
    with pytest.raises(ImportError_, match="ms.csv:2: response_ms must be a whole number, got 'abc'"):
        import_votes(engine, ms)
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes((HEADER + "wü,astronaut,reference,mild,5,4,a\n").encode("utf-16"))
    assert import_votes(engine, utf16) == 1 and "wü" in set(export_votes(engine).rater)
    (tmp_path / "latin.csv").write_bytes((HEADER + "w\xe9,astronaut,reference,mild,5,4,a\n").encode("latin-1"))
    with pytest.raises(ImportError_, match="latin.csv: not UTF-8 or UTF-16"):
        import_votes(engine, tmp_path / "latin.csv")


def test_database_from_the_previous_layout_is_upgraded_keeping_votes(tmp_path):
    old = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with old.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE votes (rater VARCHAR(128), trial INTEGER, kind VARCHAR(16) NOT NULL, "
                             "image VARCHAR(128) NOT NULL, condition_a VARCHAR(128) NOT NULL, condition_b VARCHAR(128) "
                             "NOT NULL, score_a INTEGER NOT NULL, score_b INTEGER NOT NULL, preference VARCHAR(8) NOT "
                             "NULL, response_ms INTEGER, created DATETIME NOT NULL, PRIMARY KEY (rater, trial))")
        conn.exec_driver_sql("INSERT INTO votes VALUES ('a', 0, 'main', 'im', 'x', 'y', 4, 2, 'a', 900, "
                             "'2026-01-01 10:00:00')")
    engine = db.connect(f"sqlite:///{tmp_path / 'old.db'}")
    v = export_votes(engine)
    assert len(v) == 1 and v.design[0] == "ab" and v.score_a[0] == 4 and v.condition_b[0] == "y"
    with engine.begin() as conn:  # and the new layout's single-stimulus votes fit now
        conn.execute(db.votes.insert().values(rater="a", trial=1, kind="main", design="acr-hr", image="im",
                                              condition_a="x", score_a=3, created=db.now()))


CONFIG_OK = "[[images]]\nname='a'\npath='skimage:astronaut'\n[[conditions]]\nname='r'\nkind='reference'\n" \
            "[[conditions]]\nname='d'\nkind='degraded'\n"


@pytest.mark.parametrize("text, match", [
    ("name = 'x'\n[[images]\n", r"study.toml: malformed TOML.*line 2"),
    ("[[images]]\nname = 'a'\npath = 'missing.png'\n", r"study.toml:3: image 'a': file not found"),
    ("[[images]]\nname='a'\npath='skimage:astronaut'\n[[conditions]]\nname = 'x'\nkind = 'magic'\n"
     "[[conditions]]\nname='r'\nkind='reference'\n", r"study.toml:6: conditions\[0\] \('x'\): kind must be"),
    ("votes_per_pair = 'many'\n", r"study.toml:1: votes_per_pair must be a whole number .* got str 'many'"),
    ("votes_per_pair = 2.5\n", r"study.toml:1: votes_per_pair must be a whole number"),
    ("allow_ties = 1\n", r"study.toml:1: allow_ties must be true or false"),
    ("colour = 1\n", r"study.toml:1: unknown setting 'colour'"),
    ("design = 'mushra'\n", r"study.toml:1: design must be one of pc, acr-hr, dcr, ab"),
    ("images = 'a.png'\n", r"study.toml:1: images must be a list of \[\[images\]\] tables"),
    (CONFIG_OK + "[[conditions]]\nname='m'\nkind='degraded'\npreest='mild'\n",
     r"study.toml:13: \[\[conditions\]\] #3: unknown key 'preest'"),
    (CONFIG_OK.replace("name='a'", "name='a'\nsize=3"), r"study.toml:3: \[\[images\]\] #1: unknown key 'size'"),
    (CONFIG_OK.replace("kind='degraded'", "kind='degraded'\npreset=2"),
     r"study.toml:10: conditions\[1\].preset must be a text, got int 2"),
    ("design = 'dcr'\n" + CONFIG_OK.replace("kind='reference'", "kind='degraded'").replace("name='r'", "name='q'"),
     r"study.toml:1: design 'dcr' needs a condition with kind = \"reference\""),
    ("contrasts = [['r', 'zzz']]\n" + CONFIG_OK, r"study.toml:1: contrast \['r', 'zzz'\]: needs two different"),
    ("[[training]]\nname='a'\npath='skimage:rocket'\n" + CONFIG_OK, r"study.toml: image names must be unique"),
    ("training_trials = 2\n" + CONFIG_OK, r"study.toml:1: training_trials needs \[\[training\]\] photos"),
])
def test_bad_study_files_name_file_and_line(tmp_path, text, match):
    (tmp_path / "study.toml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(tmp_path / "study.toml")


def test_example_study_loads():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parent.parent / "study" / "example.toml")
    assert cfg.design == "pc" and cfg.training and ("student", "teacher") in cfg.contrasts
