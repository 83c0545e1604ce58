"""The rating study's command line.

    python -m study build  CONFIG [--db URL]           render stimuli, store their SSIM/PSNR/MS-SSIM
    python -m study serve  CONFIG [--db URL] [--port]  the rating app in the browser
    python -m study report --db URL --out DIR          tables (CSV, Markdown) and an HTML page with plots
    python -m study import-votes FILE.csv --db URL     votes collected elsewhere
    python -m study export --db URL [--out FILE.csv]   all raw votes

--db defaults to a SQLite file beside CONFIG; give a PostgreSQL URL (postgresql+psycopg://…) for a shared server.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def stimuli_dir(config_path: Path) -> Path:
    return config_path.parent / f"{config_path.stem}_stimuli"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m study", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="render the stimuli of a study")
    b.add_argument("config", type=Path)
    b.add_argument("--db", default=None)
    b.add_argument("--out", type=Path, default=None, help="stimulus folder (default CONFIG_stimuli/ beside it)")
    s = sub.add_parser("serve", help="serve the rating app")
    s.add_argument("config", type=Path)
    s.add_argument("--db", default=None)
    s.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    s.add_argument("--port", type=int, default=7861)
    r = sub.add_parser("report", help="write the report tables and HTML page")
    r.add_argument("--db", required=True)
    r.add_argument("--out", type=Path, default=Path("study_report"))
    i = sub.add_parser("import-votes", help="load votes from a CSV")
    i.add_argument("file", type=Path)
    i.add_argument("--db", required=True)
    e = sub.add_parser("export", help="write all votes as CSV")
    e.add_argument("--db", required=True)
    e.add_argument("--out", type=Path, default=None, help="CSV path (default: standard output)")
    a = ap.parse_args(argv)

    from study import db
    from study.config import ConfigError, load_config

    try:
        if a.cmd in ("build", "serve"):
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

            make_app(cfg, engine).queue(default_concurrency_limit=8).launch(
                server_name=a.host, server_port=a.port, allowed_paths=[str(stimuli_dir(a.config).resolve())])
        elif a.cmd == "report":
            from study.report import build_report, write

            for p in write(build_report(engine), a.out):
                print("wrote", p)
        elif a.cmd == "import-votes":
            from study.votes_io import import_votes

            print(f"imported {import_votes(engine, a.file)} votes")
        elif a.cmd == "export":
            from study.votes_io import export_votes

            df = export_votes(engine)
            if a.out:
                df.to_csv(a.out, index=False)
                print(f"wrote {len(df)} votes to {a.out}")
            else:
                df.to_csv(sys.stdout, index=False)
    except (ConfigError, ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
