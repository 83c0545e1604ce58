"""The rating study's command line.

    python -m study build  CONFIG [--db URL]           render stimuli, store their SSIM/PSNR/MS-SSIM
    python -m study serve  CONFIG [--db URL] [--port]  the rating app in the browser
    python -m study report --db URL --out DIR          tables (CSV, Markdown) and an HTML page with plots
    python -m study links  CONFIG [--db URL] -n 20 --url URL   signed invitation links for raters
    python -m study import-votes FILE.csv --db URL     votes collected elsewhere
    python -m study export --db URL [--out FILE.csv]   all raw votes (imports back losslessly)

--db defaults to a SQLite file beside CONFIG; give a PostgreSQL URL (postgresql+psycopg://…) for a shared server.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def stimuli_dir(config_path: Path) -> Path:
    return config_path.parent / f"{config_path.stem}_stimuli"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m study", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    db_help = "database URL or SQLite file (default for CONFIG: a SQLite file beside it)"
    b = sub.add_parser("build", help="render the stimuli of a study", description="Render every stimulus once and "
                       "store its SSIM/PSNR/MS-SSIM; re-running renders only what changed.")
    b.add_argument("config", type=Path, help="the study's TOML file")
    b.add_argument("--db", default=None, help=db_help)
    b.add_argument("--out", type=Path, default=None, help="stimulus folder (default CONFIG_stimuli/ beside it)")
    s = sub.add_parser("serve", help="serve the rating app", description="The rating app; only the stimulus "
                       "folder's serve/ subfolder is readable over the web.")
    s.add_argument("config", type=Path, help="the study's TOML file")
    s.add_argument("--db", default=None, help=db_help)
    s.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), help="address to listen on")
    s.add_argument("--port", type=int, default=7861, help="port to listen on")
    k = sub.add_parser("links", help="print signed invitation links", description="New rater ids with tokens "
                       "signed by the server secret (STUDY_SECRET, else one kept in the database); a rater can act "
                       "only through their token.")
    k.add_argument("config", type=Path, help="the study's TOML file")
    k.add_argument("--db", default=None, help=db_help)
    k.add_argument("-n", type=int, default=10, help="how many links")
    k.add_argument("--url", default="http://127.0.0.1:7861/", help="address of the rating app")
    r = sub.add_parser("report", help="write the report tables and HTML page",
                       description="Screening, MOS/DMOS or Bradley–Terry with intervals, power; CSV, Markdown, HTML.")
    r.add_argument("--db", required=True, help="database URL or SQLite file")
    r.add_argument("--out", type=Path, default=Path("study_report"), help="folder for the report files")
    i = sub.add_parser("import-votes", help="load votes from a CSV", description=(
        "Votes from a CSV (platform columns rater, image, condition_a, condition_b, score_a, score_b, preference, "
        "or an export); idempotent, keyed by rater and trial; one bad row and nothing is stored."))
    i.add_argument("file", type=Path, help="CSV file (UTF-8 or UTF-16)")
    i.add_argument("--db", required=True, help="database URL or SQLite file of the built study")
    e = sub.add_parser("export", help="write all votes as CSV", description="Every stored field of every vote.")
    e.add_argument("--db", required=True, help="database URL or SQLite file")
    e.add_argument("--out", type=Path, default=None, help="CSV path (default: standard output)")
    a = ap.parse_args(argv)

    from study import db
    from study.config import ConfigError, load_config

    try:
        if a.cmd in ("build", "serve", "links"):
            cfg = load_config(a.config)
            engine = db.connect(a.db or db.default_url(a.config))
        else:
            engine = db.connect(a.db)
        if a.cmd == "build":
            from study.stimuli import build

            made = build(cfg, engine, a.out or stimuli_dir(a.config))
            print(f"{len(cfg.images)} images × {len(cfg.conditions)} conditions ready ({made} rendered now)")
        elif a.cmd == "serve":
            from study.ui import make_app

            from study.stimuli import serve_dir

            make_app(cfg, engine).queue(default_concurrency_limit=8).launch(
                server_name=a.host, server_port=a.port, allowed_paths=[str(serve_dir(stimuli_dir(a.config)).resolve())])
        elif a.cmd == "links":
            from study import access

            secret = access.server_secret(engine)
            for _ in range(a.n):
                print(f"{a.url}?token={access.sign(secret, access.new_rater_id())}")
        elif a.cmd == "report":
            from study.report import build_report, write

            for p in write(build_report(engine), a.out):
                print("wrote", p)
        elif a.cmd == "import-votes":
            from study.votes_io import import_votes

            print(f"imported {import_votes(engine, a.file)} new votes")
        elif a.cmd == "export":
            from study.votes_io import write_votes

            n = write_votes(engine, a.out or sys.stdout)
            if a.out:
                print(f"wrote {n} votes to {a.out}")
    except (ConfigError, ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
