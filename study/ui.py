"""The rating app in the browser: rater id or URL token, instructions with anchors, A/B trials, completion code.

Only opaque stimulus ids ever reach the browser. Everything a rater does goes through ``study.schedule.Study``,
so the UI holds no state that a refresh could lose: reopening the page with the same id resumes.
"""
from __future__ import annotations

import os

import gradio as gr
import sqlalchemy as sa

from study import db
from study.config import StudyConfig
from study.schedule import Study
from study.stimuli import GOLD

ACR = [("5 – Excellent", 5), ("4 – Good", 4), ("3 – Fair", 3), ("2 – Poor", 2), ("1 – Bad", 1)]
PREFS = [("A looks better", "a"), ("No difference", "none"), ("B looks better", "b")]
INSTRUCTIONS = """### How to rate
You will see pairs of pictures, **A** and **B**, showing the same scene after different processing.
Rate the quality of **each** picture from 1 (bad) to 5 (excellent), then say which one looks better.
Look at sharpness, blockiness and blur. There are no right answers; go with your first impression.
Below are the best and the worst quality you can expect."""


def progress_html(done: int, total: int) -> str:
    return f"<div>Trial {min(done + 1, total)} of {total}</div><progress value='{done}' max='{total}' style='width:100%'></progress>"


def render_rating(cfg: StudyConfig, engine: sa.Engine, blocks: gr.Blocks) -> None:
    """The rating UI, built inside ``blocks`` (a standalone app or a tab of app.py). A ``?token=ID`` in the page
    address fills in the rater id and starts (or resumes) at once."""
    study = Study(cfg, engine)
    with engine.connect() as conn:
        paths = {r.id: r.path for r in conn.execute(sa.select(db.stimuli.c.id, db.stimuli.c.path))}
    anchor_image = cfg.images[0].name
    best = paths[study.stimulus[(anchor_image, cfg.reference.name)]] if cfg.reference else None
    worst = paths[study.stimulus[(anchor_image, GOLD)]]

    rater = gr.State("")
    trial = gr.State(None)
    with gr.Column(visible=True) as start_col:
        rater_box = gr.Textbox(label="Your rater id (from your invitation, or any name you will remember)",
                               elem_id="rater-id")
        start = gr.Button("Start", variant="primary", elem_id="rater-start")
    with gr.Column(visible=False) as intro_col:
        gr.Markdown(INSTRUCTIONS)
        with gr.Row():
            if best:
                gr.Image(best, label="Excellent (5)", interactive=False, format="png")
            gr.Image(worst, label="Bad (1)", interactive=False, format="png")
        begin = gr.Button("I understand: start rating", variant="primary", elem_id="rater-begin")
    with gr.Column(visible=False) as trial_col:
        progress = gr.HTML()
        with gr.Row():
            with gr.Column():
                img_a = gr.Image(label="A", interactive=False, format="png", elem_id="stim-a")
                score_a = gr.Radio(ACR, label="Quality of A", elem_id="score-a")
            with gr.Column():
                img_b = gr.Image(label="B", interactive=False, format="png", elem_id="stim-b")
                score_b = gr.Radio(ACR, label="Quality of B", elem_id="score-b")
        pref = gr.Radio(PREFS, label="Which looks better?", elem_id="preference")
        submit = gr.Button("Next", variant="primary", elem_id="rater-next")
    with gr.Column(visible=False) as done_col:
        done_md = gr.Markdown(elem_id="rater-done")

    views = [start_col, intro_col, trial_col, done_col]

    def show(which: int):
        return [gr.Column(visible=i == which) for i in range(len(views))]

    def next_view(rid: str):
        t = study.current(rid)
        done, total = study.progress(rid)
        if t is None:
            code = study.completion_code(rid)
            return (*show(3), None, "", None, None, None, None, None,
                    f"## Thank you!\nYou rated all {total} pairs. Your completion code: **{code}**")
        return (*show(2), t.index, progress_html(done, total), paths[t.stimulus_a], paths[t.stimulus_b],
                None, None, None, "")

    trial_outputs = [*views, trial, progress, img_a, img_b, score_a, score_b, pref, done_md]

    def on_start(rid: str):
        rid = (rid or "").strip()
        if not rid:
            raise gr.Error("Please enter your rater id.")
        try:
            study.start(rid)
        except ValueError as e:
            raise gr.Error(str(e)) from e
        done, _ = study.progress(rid)
        if done:  # returning rater: straight back to where they left off
            return rid, *next_view(rid)
        return rid, *show(1), *[gr.update()] * (len(trial_outputs) - len(views))

    def on_submit(rid: str, index, a, b, p):
        if index is None:
            raise gr.Error("No trial is open; reload the page.")
        if a is None or b is None or p is None:
            gr.Warning("Please rate both pictures and choose which looks better.")
            return [gr.update()] * len(trial_outputs)
        study.answer(rid, int(index), int(a), int(b), p)
        return next_view(rid)

    start.click(on_start, rater_box, [rater, *trial_outputs], api_name="start")
    rater_box.submit(on_start, rater_box, [rater, *trial_outputs], api_visibility="private")
    begin.click(next_view, rater, trial_outputs, api_name="begin")
    submit.click(on_submit, [rater, trial, score_a, score_b, pref], trial_outputs, api_name="rate",
                 trigger_mode="once")

    def from_url(request: gr.Request):
        token = (request.query_params.get("token") or "").strip() if request else ""
        if not token:
            return "", "", *[gr.update()] * len(trial_outputs)
        return token, *on_start(token)

    blocks.load(from_url, None, [rater_box, rater, *trial_outputs], api_visibility="private")


def admin_view(engine: sa.Engine, password: str):
    """(summary text, condition table or None, report file paths) for the admin page.

    Raises PermissionError when the page is off (no STUDY_ADMIN_PASSWORD on the server) or the password is wrong.
    """
    import hmac
    import tempfile
    from pathlib import Path

    from study.report import build_report, write

    expected = os.environ.get("STUDY_ADMIN_PASSWORD")
    if not expected:
        raise PermissionError("The admin page is off: set STUDY_ADMIN_PASSWORD on the server to turn it on.")
    if not hmac.compare_digest((password or "").encode(), expected.encode()):
        raise PermissionError("Wrong password.")
    with engine.connect() as conn:
        def count(table):
            return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()

        n_raters, n_votes = count(db.raters), count(db.votes)
        n_done = count(sa.select(db.raters.c.id).where(db.raters.c.completed.isnot(None)).subquery())
    text = f"**{n_raters}** raters ({n_done} finished), **{n_votes}** votes."
    try:
        tables = build_report(engine)
    except ValueError as e:  # no votes yet
        return f"{text} {e}.", None, []
    paths = write(tables, Path(tempfile.mkdtemp(prefix="study_report_")))
    key = "conditions_screened" if "conditions_screened" in tables else "conditions_all"
    return text, tables[key].round(3), [str(p) for p in paths]


def render_admin(engine: sa.Engine) -> None:
    """Progress, the live report and CSV downloads, behind STUDY_ADMIN_PASSWORD."""
    password = gr.Textbox(label="Admin password", type="password")
    show_btn = gr.Button("Show progress and report")
    summary = gr.Markdown()
    table = gr.Dataframe(interactive=False)
    files = gr.File(label="Report files (CSV, Markdown, HTML)", file_count="multiple")

    def admin(pw: str):
        try:
            return admin_view(engine, pw)
        except PermissionError as e:
            raise gr.Error(str(e)) from e

    show_btn.click(admin, password, [summary, table, files], api_visibility="private")


def make_app(cfg: StudyConfig, engine: sa.Engine) -> gr.Blocks:
    with gr.Blocks(title=f"Rating study: {cfg.name}") as app:
        gr.Markdown("# Picture quality study")
        with gr.Tab("Rate"):
            render_rating(cfg, engine, app)
        with gr.Tab("Admin"):
            render_admin(engine)
    return app
