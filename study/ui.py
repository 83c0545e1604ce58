"""The rating app in the browser: invitation code, instructions with anchors, trials of the study's design, code.

Only opaque stimulus ids ever reach the browser, shown at 1:1 device pixels (sharpness is the point) without
download or share buttons. A rater acts only through a signed token (``study.access``): from their link, or drawn
when an open study enrols them. The rater id lives in server-side session state, never in a request, and the
study's events are hidden from the public API. Everything goes through ``study.schedule.Study``, so reopening the
page with the same token resumes where the rater left off.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Protocol

import gradio as gr
import sqlalchemy as sa

from study import access, db
from study.config import ANCHOR_BEST, ANCHOR_WORST, StudyConfig
from study.designs import DESIGNS
from study.hosting import Hosting
from study.schedule import Study, StudyFull, TooFast

PREFS = [("A looks better", "a"), ("No difference", "none"), ("B looks better", "b")]
COMMON = ("Look at the whole picture; there are no right answers, go with your first impression. Pictures are shown "
          "pixel for pixel: please do not zoom the page.")

ONE_TO_ONE_JS = """() => {
  const fit = img => {
    if (!img.naturalWidth) return;
    const r = window.devicePixelRatio || 1;
    Object.assign(img.style, {width: img.naturalWidth / r + 'px', height: img.naturalHeight / r + 'px',
                              maxWidth: 'none', maxHeight: 'none', objectFit: 'none'});
    if (img.parentElement) img.parentElement.style.overflow = 'auto';
  };
  const scan = () => document.querySelectorAll('.stimulus img').forEach(img => {
    if (!img.dataset.oneToOne) { img.dataset.oneToOne = '1'; img.addEventListener('load', () => fit(img)); }
    fit(img);
  });
  new MutationObserver(scan).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                     attributeFilter: ['src']});
  scan();
}"""
DISPLAY_JS = """(...args) => { args[args.length - 1] =
  `${window.screen.width}x${window.screen.height}@${window.devicePixelRatio || 1}`; return args; }"""


SHOWN_KEEP_S = 600  # a showing's copy is read by the server at once; older ones are removed
_pruned = [0.0]


def showing(path: str | Path) -> str:
    """A fresh copy of a rater-facing stimulus for one showing: a new random name, and bytes that differ by a random
    PNG text chunk (the pixels are the same), so neither the name nor Gradio's content-hashed cache folder tells a
    rater that a picture was shown before (a repeat, or one condition in another pair). Copies live in the served
    folder's ``shown/`` and go after SHOWN_KEEP_S."""
    path = Path(path)
    folder = path.parent / "shown"
    folder.mkdir(exist_ok=True)
    now = time.time()
    if now - _pruned[0] > 60:
        _pruned[0] = now
        for old in folder.glob("*.png"):
            with contextlib.suppress(OSError):
                if now - old.stat().st_mtime > SHOWN_KEEP_S:
                    old.unlink()
    data = path.read_bytes()
    if data[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG")
    name = secrets.token_hex(8)
    body = b"Comment\x00" + secrets.token_hex(8).encode()
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    out = folder / f"{name}.png"
    out.write_bytes(data[:33] + chunk + data[33:])  # after the signature (8 bytes) and IHDR (25)
    return str(out)


def progress_html(done: int, total: int, practice: bool = False) -> str:
    note = " · practice (not counted)" if practice else ""
    return (f"<div>Trial {min(done + 1, total)} of {total}{note}</div>"
            f"<progress value='{done}' max='{total}' style='width:100%'></progress>")


def stimulus_image(label: str, elem_id: str, visible: bool = True) -> gr.Image:
    """A rater-facing picture: no download, share or fullscreen buttons; scaled 1:1 by ONE_TO_ONE_JS."""
    return gr.Image(label=label, interactive=False, format="png", buttons=[], elem_id=elem_id,
                    elem_classes=["stimulus"], visible=visible)


class Preparing(Protocol):
    """A study whose stimuli are still being built (``study.stimuli.BackgroundBuild``)."""

    ready: bool
    failed: bool

    def status(self) -> str: ...


class Stimuli:
    """The study's scheduler and its served files, made when the stimuli are ready (at once without ``preparing``)."""

    def __init__(self, cfg: StudyConfig, engine: sa.Engine, preparing: Preparing | None = None):
        self.cfg, self.engine, self.preparing = cfg, engine, preparing
        self._lock = threading.Lock()
        self.study: Study | None = None
        if preparing is None:
            self.get()  # stimuli missing: an error at start, as before

    def get(self) -> Study | None:
        """The Study, or None while the stimuli are being built."""
        if self.study is None and (self.preparing is None or self.preparing.ready):
            with self._lock:
                if self.study is None:
                    with self.engine.connect() as conn:
                        rows = conn.execute(sa.select(db.stimuli.c.id, db.stimuli.c.path, db.stimuli.c.image,
                                                      db.stimuli.c.condition, db.stimuli.c.role)).all()
                    self.paths = {r.id: r.path for r in rows}
                    self.anchors = {r.condition: r.path for r in rows if r.role == "anchor" and self.cfg.training
                                    and r.image == self.cfg.training[0].name}
                    self.study = Study(self.cfg, self.engine)
        return self.study

    def status(self) -> str:
        """What the page says instead of the start button (empty when ready)."""
        return "" if self.get() is not None else self.preparing.status()


def render_rating(cfg: StudyConfig, engine: sa.Engine, blocks: gr.Blocks, preparing: Preparing | None = None) -> None:
    """The rating UI, built inside ``blocks`` (a standalone app or a tab of app.py). A ``?token=CODE`` in the page
    address fills in the invitation code and starts (or resumes) at once. With ``preparing`` (stimuli still being
    built) the page says so, with the count rendered, instead of the start button, and updates itself until ready."""
    stimuli = Stimuli(cfg, engine, preparing)
    secret = access.server_secret(engine)
    design = DESIGNS[cfg.design]  # what each design shows and asks: study/designs.py

    rater = gr.State("")
    trial = gr.State(None)
    waiting = stimuli.status()
    status_md = gr.Markdown(waiting, elem_id="study-preparing", visible=bool(waiting))
    timer = gr.Timer(2.0, active=False)  # set going by the page's load while the stimuli are being built
    with gr.Column(visible=not waiting) as start_col:
        code_box = gr.Textbox(label="Your invitation code" + (" (leave empty to start as a new rater)"
                                                               if cfg.open_enrolment else ""), elem_id="rater-code")
        start = gr.Button("Start", variant="primary", elem_id="rater-start")
    with gr.Column(visible=False) as intro_col:
        gr.Markdown(f"### How to rate\n{design.instructions} {COMMON}")
        resume_md = gr.Markdown(elem_id="rater-resume")
        anchor_images = []  # the practice photo's anchors, filled in (fresh copies) when the instructions show
        if cfg.training:
            intro, best_label, worst_label = design.anchors  # a pair design has no 5-point scale to anchor
            gr.Markdown(intro)
            with gr.Row():
                anchor_images = [gr.Image(label=label, interactive=False, format="png", buttons=[], elem_id=elem_id,
                                          elem_classes=["stimulus"])
                                 for label, elem_id in ((best_label, "anchor-best"), (worst_label, "anchor-worst"))]
        begin = gr.Button("I understand: start rating", variant="primary", elem_id="rater-begin")
    with gr.Column(visible=False) as trial_col:
        progress = gr.HTML()
        two = design.right_label is not None
        with gr.Row():
            with gr.Column():
                img_left = stimulus_image(design.left_label, "stim-a")
                score_a = gr.Radio(design.scale, label="Quality of A", elem_id="score-a", visible=design.score_each)
            with gr.Column(visible=two):
                img_right = stimulus_image(design.right_label or "B", "stim-b", visible=two)
                score_b = gr.Radio(design.scale, label="Quality of B", elem_id="score-b", visible=design.score_each)
        single = gr.Radio(design.scale, elem_id="score", visible=design.scored and not design.score_each,
                          label=design.score_label)
        allowed = design.preferences(cfg.allow_ties)
        pref = gr.Radio([p for p in PREFS if p[1] in allowed], label="Which looks better?", elem_id="preference",
                        visible=design.preferred)
        display = gr.Textbox(visible=False)
        submit = gr.Button("Next", variant="primary", elem_id="rater-next")
    with gr.Column(visible=False) as done_col:
        done_md = gr.Markdown(elem_id="rater-done")

    views = [start_col, intro_col, trial_col, done_col]

    def show(which: int):
        return [gr.Column(visible=i == which) for i in range(len(views))]

    trial_outputs = [*views, trial, progress, img_left, img_right, score_a, score_b, single, pref, done_md]
    keep = [gr.update()] * len(trial_outputs)

    def finished(message: str):
        return (*show(3), None, "", None, None, None, None, None, None, message)

    def not_ready() -> bool:
        if stimuli.get() is None:
            gr.Warning(stimuli.status())
            return True
        return False

    def next_view(rid: str):
        if not rid:
            gr.Warning("Please start with your invitation code first.")
            return keep
        if not_ready():
            return keep
        study, paths = stimuli.study, stimuli.paths
        t = study.current(rid)
        done, total = study.progress(rid)
        if t is None:
            code = study.completion_code(rid)
            return finished(f"## Thank you!\nYou rated {done} pictures. Your completion code: **{code}**")
        left, right = design.sides(t.stimulus_a, t.stimulus_b)
        return (*show(2), t.index, progress_html(done, total, t.kind == "training"), showing(paths[left]),
                showing(paths[right]) if right else None, None, None, None, None, "")

    def on_start(code: str):
        """(rater, resume note, the trial outputs, the anchors: fresh copies when the instructions show)."""
        out = started(code)
        if out[1] and anchor_images:  # a resume note: the instructions show
            anchors = stimuli.anchors
            return (*out, *(showing(anchors[c]) if c in anchors else None for c in (ANCHOR_BEST, ANCHOR_WORST)))
        return (*out, *[gr.update()] * len(anchor_images))

    def started(code: str):
        if not_ready():
            return "", "", *keep
        study = stimuli.study
        code = (code or "").strip()
        if code:
            rid = access.verify(secret, code)
            if rid is None:
                gr.Warning("That invitation code is not valid. Please check your link.")
                return "", "", *keep
        elif cfg.open_enrolment:
            rid = access.new_rater_id()
            code = access.sign(secret, rid)
        else:
            gr.Warning("This study is by invitation: please open the link you were given.")
            return "", "", *keep
        try:
            study.start(rid)
        except StudyFull as e:
            return "", "", *finished(f"## {e}")
        except ValueError as e:
            gr.Warning(str(e))
            return "", "", *keep
        done, _ = study.progress(rid)
        if done or study.completion_code(rid):  # returning rater: straight back to where they left off
            return rid, "", *next_view(rid)
        resume = f"To continue later, keep this code: `{code}` (or reopen the page with `?token={code}`)."
        return rid, resume, *show(1), *[gr.update()] * (len(trial_outputs) - len(views))

    def on_submit(rid: str, index, a, b, s, p, disp):
        if not rid or index is None:
            gr.Warning("No trial is open; please reload the page.")
            return keep
        if not_ready():
            return keep
        study = stimuli.study
        answer = design.answer(a, b, s, p)
        if design.missing(answer):
            gr.Warning("Please answer before going on.")
            return keep
        try:
            study.answer(rid, int(index), *[None if v is None else (v if isinstance(v, str) else int(v)) for v in answer],
                         display=disp)
        except TooFast as e:
            gr.Warning(str(e))
            return keep
        return next_view(rid)

    start_outputs = [rater, resume_md, *trial_outputs, *anchor_images]
    start.click(on_start, code_box, start_outputs, api_name="study_start", api_visibility="private")
    code_box.submit(on_start, code_box, start_outputs, api_visibility="private")
    begin.click(next_view, rater, trial_outputs, api_name="study_begin", api_visibility="private")
    submit.click(on_submit, [rater, trial, score_a, score_b, single, pref, display], trial_outputs,
                 api_name="study_rate", api_visibility="private", trigger_mode="once", js=DISPLAY_JS)

    def preparing_view():
        """(status, start column, timer): the count so far while building; the start button once ready."""
        text = stimuli.status()
        if not text:
            return gr.Markdown("", visible=False), gr.Column(visible=True), gr.Timer(active=False)
        return gr.Markdown(text, visible=True), gr.Column(visible=False), gr.Timer(active=not preparing.failed)

    def on_load(request: gr.Request):
        token = (request.query_params.get("token") or "").strip() if request else ""
        status, start_view, ticking = preparing_view()
        unchanged = [gr.update()] * len(start_outputs)
        if stimuli.get() is None:  # the token waits in its box for the start button
            return status, ticking, token, *unchanged
        if not token:
            return status, ticking, "", unchanged[0], unchanged[1], start_view, *unchanged[3:]
        return status, ticking, token, *on_start(token)

    blocks.load(on_load, None, [status_md, timer, code_box, *start_outputs], api_visibility="private")
    timer.tick(preparing_view, None, [status_md, start_col, timer], api_name="study_status", api_visibility="private",
               show_progress="hidden", concurrency_limit=None)
    blocks.load(None, None, None, js=ONE_TO_ONE_JS)


ADMIN_THROTTLE = access.Throttle(limit=5, window=60)


def admin_view(engine: sa.Engine, password: str, client: str = "", note: str = ""):
    """(summary text, condition table or None, download paths) for the admin page. The downloads are the votes'
    lossless export (``votes.csv``, which ``python -m study import-votes`` reads back, so a study run on a hosted app
    can be analysed elsewhere) and the report files; ``note`` (where the votes are kept) ends the summary.

    Raises PermissionError when the page is off (no STUDY_ADMIN_PASSWORD on the server), the password is wrong, or
    this client has given 5 wrong passwords in the last minute (then even the right one is refused unchecked).
    """
    import hmac
    import tempfile
    from pathlib import Path

    from study.report import build_report, write
    from study.votes_io import write_votes

    expected = os.environ.get("STUDY_ADMIN_PASSWORD")
    if not expected:
        raise PermissionError("The admin page is off: set STUDY_ADMIN_PASSWORD on the server to turn it on.")
    ADMIN_THROTTLE.check(client)
    if not hmac.compare_digest((password or "").encode(), expected.encode()):
        ADMIN_THROTTLE.fail(client)
        raise PermissionError("Wrong password.")
    with engine.connect() as conn:
        def count(table):
            return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()

        n_raters, n_votes = count(db.raters), count(db.votes)
        n_done = count(sa.select(db.raters.c.id).where(db.raters.c.completed.isnot(None)).subquery())
    text = f"**{n_raters}** raters ({n_done} finished), **{n_votes}** votes."
    folder = Path(tempfile.mkdtemp(prefix="study_admin_"))
    votes_csv = folder / "votes.csv"
    write_votes(engine, votes_csv)
    try:
        tables = build_report(engine)
    except ValueError:  # no votes yet
        tables = {}
    key = next((k for k in ("conditions_screened", "conditions_all") if k in tables), None)
    if key is None:  # no votes, or only practice ones
        return "\n\n".join(filter(None, [f"{text} No report before the first rated trial.", note])), None, [str(votes_csv)]
    paths = write(tables, folder / "report")
    return "\n\n".join(filter(None, [text, note])), tables[key].round(3), [str(votes_csv), *map(str, paths)]


def render_admin(engine: sa.Engine, note: str = "") -> None:
    """Progress, the live report and downloads (the votes' export, the report), behind STUDY_ADMIN_PASSWORD
    (throttled). ``note``: where the votes are kept (``study.hosting``), shown after login."""
    password = gr.Textbox(label="Admin password", type="password", elem_id="admin-password")
    show_btn = gr.Button("Show progress and report", elem_id="admin-show")
    summary = gr.Markdown(elem_id="admin-summary")
    table = gr.Dataframe(interactive=False, visible=False)
    files = gr.File(label="Downloads: votes.csv (every vote; python -m study import-votes reads it back) and the "
                          "report (CSV, Markdown, HTML)", file_count="multiple", elem_id="admin-files")

    def admin(pw: str, request: gr.Request):
        try:
            text, conditions, paths = admin_view(engine, pw, request.client.host if request and request.client else "", note)
            return text, gr.Dataframe(conditions, visible=conditions is not None), paths
        except PermissionError as e:
            gr.Warning(str(e))
            return gr.update(), gr.update(), gr.update()

    show_btn.click(admin, password, [summary, table, files], api_name="study_admin", api_visibility="private")


def render_hosted(cfg: StudyConfig, engine: sa.Engine, hosting: Hosting, blocks: gr.Blocks,
                  preparing: Preparing | None = None) -> None:
    """The Rate tab of app.py: the rating UI (``preparing``: while the stimuli are built), or why it collects no
    votes (``study.hosting.Hosting.refusal``), and the admin view below, which also says where the votes are kept."""
    if hosting.refusal:
        gr.Markdown(f"**{hosting.refusal}**", elem_id="study-refused")
    else:
        gr.Markdown("Help us measure picture quality. It takes about five minutes.")
        render_rating(cfg, engine, blocks, preparing)
    with gr.Accordion("Study admin", open=False):
        render_admin(engine, hosting.notice())


def make_app(cfg: StudyConfig, engine: sa.Engine) -> gr.Blocks:
    with gr.Blocks(title="Picture quality study") as app:  # the study's name may name its conditions
        gr.Markdown("# Picture quality study")
        with gr.Tab("Rate"):
            render_rating(cfg, engine, app)
        with gr.Tab("Admin"):
            render_admin(engine)
    return app
