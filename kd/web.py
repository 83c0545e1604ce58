"""The browser side of sharpkd: the student runs where the call is decoded, in the viewer's browser.

This module only serves files; no frame ever reaches the server. Routes (mounted on the Gradio app's own server by
``app.launch(app_kwargs=web.app_kwargs())``, or alone with ``python -m kd.web``):

- ``GET /web/model/{student,student_lite}.onnx``: a stream-aware student exported for the browser
  (``kd.export.export_onnx_web``: RGBA bytes and the stream vector in, RGBA bytes out), made from ``weights/`` on
  first request and cached. ``sharpkd.js`` loads the full one on WebGPU, the light one on WASM.
- ``GET /web/ort/…``: ONNX Runtime Web from ``web/node_modules`` (``npm ci --prefix web`` at install).
- ``GET /web/runtime.json``: whether that runtime is installed, its pinned version and a CDN copy to fall back on.
- ``GET /web/…``: ``web/`` itself: ``sharpkd.js`` (the ES module any WebRTC page can use) and ``live.html``.

Every response under ``/web/`` is sent with COOP/COEP headers, so a page opened there is cross-origin isolated and
ONNX Runtime's WASM backend may run threads (SharedArrayBuffer).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

# the repository's web/; a wheel installed elsewhere (pip install .) finds it through SHARPKD_WEB, as weights/ through
# SHARPKD_WEIGHTS
WEB_DIR = Path(os.environ.get("SHARPKD_WEB", Path(__file__).resolve().parent.parent / "web"))
ORT_DIR = WEB_DIR / "node_modules" / "onnxruntime-web" / "dist"
BROWSER_MODELS = ("student", "student_lite")  # the teacher is hundreds of times too slow for a browser
# where a server without `npm ci` sends pages for the runtime: {version} is the pinned one (a mirror may be set)
ORT_CDN = os.environ.get("SHARPKD_ORT_CDN", "https://cdn.jsdelivr.net/npm/onnxruntime-web@{version}/dist/")
ISOLATION = [(b"cross-origin-opener-policy", b"same-origin"), (b"cross-origin-embedder-policy", b"require-corp"),
             (b"cross-origin-resource-policy", b"same-origin")]


def ort_version() -> str:
    """The pinned ONNX Runtime Web version (web/package.json): the CDN fallback loads exactly the one we test."""
    return json.loads((WEB_DIR / "package.json").read_text())["dependencies"]["onnxruntime-web"]


def runtime_info() -> dict:
    version = ort_version()
    return {"local": (ORT_DIR / "ort.wasm.min.mjs").exists(), "version": version, "path": "ort/",
            "cdn": ORT_CDN.format(version=version),
            "install": "npm ci --prefix web"}


def browser_model(name: str) -> Path:
    """The ONNX file a browser runs for ``name``, exported once per weights file (kd.runtime's export cache)."""
    from kd.runtime import exported

    if name not in BROWSER_MODELS:
        raise ValueError(f"no browser model {name!r}; choose from {BROWSER_MODELS}")
    return exported(name, "onnx-web")


class WithHeaders:
    """ASGI wrapper that sets ``headers`` (name, value byte pairs) on every HTTP response of the app it wraps,
    replacing any the app set itself: the cross-origin isolation a page needs for WASM threads (``ISOLATION``), or
    the open CORS headers a CDN sends (the tests' stand-in for jsDelivr)."""

    def __init__(self, app, headers: list[tuple[bytes, bytes]]):
        self.app, self.headers = app, headers

    async def __call__(self, scope, receive, send):
        names = {k for k, _ in self.headers}

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                kept = [h for h in message.get("headers", []) if h[0].lower() not in names]
                message["headers"] = kept + self.headers
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def routes() -> list:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    async def model(request):
        try:
            path = await run_in_threadpool(browser_model, request.path_params["name"])
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        return FileResponse(path, media_type="application/octet-stream", headers={"Cache-Control": "no-cache"})

    async def runtime(request):
        return JSONResponse(runtime_info())

    async def ort(request):
        info = runtime_info()
        if not info["local"]:
            return JSONResponse({"error": f"ONNX Runtime Web is not installed: run `{info['install']}`"},
                                status_code=404)
        return await StaticFiles(directory=ORT_DIR).get_response(request.path_params["path"], request.scope)

    site = Starlette(routes=[Route("/model/{name}.onnx", model), Route("/runtime.json", runtime),
                             Route("/ort/{path:path}", ort),
                             Mount("/", app=StaticFiles(directory=WEB_DIR, html=True))])
    return [Mount("/web", app=WithHeaders(site, ISOLATION), name="web")]


def app_kwargs() -> dict:
    """Keyword arguments for ``Blocks.launch(app_kwargs=...)``: our routes go in front of Gradio's."""
    return {"routes": routes()}


def tab() -> None:
    """The Gradio tab: the Live page in a frame (same origin, so the camera permission applies; a frame is not
    cross-origin isolated, so WASM runs one thread there: the full page gets all of them)."""
    import gradio as gr

    gr.Markdown("Your camera over a real **WebRTC** call inside your browser (two peer connections in one page): "
                "cap the bandwidth and the sender shrinks its video as real senders do; the video you receive is "
                "sharpened by the student **in your browser** (ONNX Runtime Web), told what the call did to it. "
                "No frame reaches the server. Open it [full page](web/live.html) for multi-threaded WASM.")
    gr.HTML('<iframe src="web/live.html" allow="camera; autoplay; cross-origin-isolated" title="Live: sharpened in '
            'your browser" style="width:100%;height:720px;border:0" id="live-frame"></iframe>')


def main(argv=None) -> None:
    """Serve the browser sharpener alone (no Gradio): http://HOST:PORT/web/live.html."""
    import uvicorn
    from starlette.applications import Starlette

    ap = argparse.ArgumentParser(prog="python -m kd.web", description=main.__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7861)
    a = ap.parse_args(argv)
    if not runtime_info()["local"]:
        print(f"note: ONNX Runtime Web is not installed here (run `{runtime_info()['install']}`); pages load it from "
              f"{runtime_info()['cdn']}")
    uvicorn.run(Starlette(routes=routes()), host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
