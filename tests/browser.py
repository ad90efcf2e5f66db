"""Load every page of a built site in headless Chromium and report what a reader would see broken.

Chromium is driven over its DevTools protocol (a websocket; tornado's client, which the
lessons' Jupyter kernel already installs), the site served from 127.0.0.1. For each page:

- console errors, uncaught exceptions and failed loads (the browser's log at level error);
- images that did not load (``complete`` and a natural width of 0);
- math left unrendered: a Sphinx math element without MathJax's output, or a MathJax error;
- a lesson page (``lessons/NN-*.html``) without a single cell output;
- internal links to a page that does not exist or to an anchor the page does not have.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

PAGE_REPORT = """(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const math = [...document.querySelectorAll('.math')];
  return JSON.stringify({
    images: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
    math: math.length,
    unrendered: math.filter(m => !m.querySelector('mjx-container') && m.tagName !== 'MJX-CONTAINER')
                    .map(m => m.textContent.slice(0, 60)),
    mathErrors: document.querySelectorAll('mjx-merror').length,
    outputs: document.querySelectorAll('.cell_output').length,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  });
})()"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test reports failed loads itself
        pass


def _serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


async def _visit(ws_url: str, url: str, seconds: float) -> tuple[dict, list[str]]:
    """Open ``url`` in the page target behind ``ws_url``; the page's report and its errors."""
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(ws_url, max_message_size=1 << 28)
    ids = iter(range(1, 1 << 30))
    replies: dict[int, dict] = {}
    errors: list[str] = []
    loaded = asyncio.Event()

    async def send(method: str, **params) -> dict:
        number = next(ids)
        await ws.write_message(json.dumps({"id": number, "method": method, "params": params}))
        while number not in replies:
            await read()
        return replies.pop(number)

    async def read() -> None:
        message = await asyncio.wait_for(ws.read_message(), seconds)
        if message is None:
            raise RuntimeError("Chromium closed the connection")
        event = json.loads(message)
        if "id" in event:
            replies[event["id"]] = event
        elif event["method"] == "Runtime.consoleAPICalled" and event["params"]["type"] in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                 for a in event["params"]["args"]))
        elif event["method"] == "Runtime.exceptionThrown":
            details = event["params"]["exceptionDetails"]
            errors.append("exception: " + details.get("exception", {}).get("description", details["text"]))
        elif event["method"] == "Log.entryAdded" and event["params"]["entry"]["level"] == "error":
            entry = event["params"]["entry"]
            errors.append(f"log: {entry['text']} {entry.get('url', '')}".strip())
        elif event["method"] == "Page.loadEventFired":
            loaded.set()

    for method in ("Page.enable", "Runtime.enable", "Log.enable"):
        await send(method)
    await send("Page.navigate", url=url)
    while not loaded.is_set():
        await read()
    reply = await send("Runtime.evaluate", expression=PAGE_REPORT, awaitPromise=True, returnByValue=True)
    for _ in range(20):  # late console messages (scripts run after load) arrive within a moment
        try:
            await asyncio.wait_for(read(), 0.05)
        except (asyncio.TimeoutError, TimeoutError):
            break
    ws.close()
    result = reply.get("result", {}).get("result", {})
    if "value" not in result:
        raise RuntimeError(f"could not inspect {url}: {reply}")
    return json.loads(result["value"]), errors


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    raise FileNotFoundError("no Chromium: apt-get install -y chromium")


def check_site(root: Path, seconds: float = 60) -> dict[str, list[str]]:
    """Every page of the site at ``root``: page (relative path) -> what is wrong with it."""
    pages = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html") if "_static" not in p.parts)
    server, base = _serve(root)
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            port = None
            for line in browser.stderr:
                found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
                if found:
                    port = int(found.group(1))
                    break
            if port is None:
                raise RuntimeError("Chromium did not start its DevTools server")
            threading.Thread(target=browser.stderr.read, daemon=True).start()  # keep its pipe drained
            return _check_pages(root, pages, base, port, seconds)
        finally:
            browser.terminate()
            browser.wait(30)
            server.shutdown()


def _check_pages(root: Path, pages: list[str], base: str, port: int, seconds: float) -> dict[str, list[str]]:
    import urllib.request

    problems: dict[str, list[str]] = {}
    reports: dict[str, dict] = {}
    for page in pages:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(request, timeout=seconds) as reply:
            target = json.loads(reply.read())
        try:
            report, errors = asyncio.run(_visit(target["webSocketDebuggerUrl"], urljoin(base, page), seconds))
        finally:
            close = f"http://127.0.0.1:{port}/json/close/{target['id']}"
            urllib.request.urlopen(close, timeout=seconds).close()
        reports[page] = report
        found = list(errors)
        found += [f"image did not load: {src}" for src in report["images"]]
        found += [f"unrendered math: {text!r}" for text in report["unrendered"]]
        found += [f"{report['mathErrors']} MathJax errors"] if report["mathErrors"] else []
        if re.fullmatch(r"lessons/\d\d-.*\.html", page) and report["outputs"] == 0:
            found.append("a lesson page without outputs")
        problems[page] = found
    for page, report in reports.items():  # links, now that every page's anchors are known
        for link in report["links"]:
            if not link.startswith(base):
                continue
            parsed = urlparse(link)
            path = unquote(parsed.path).lstrip("/") or "index.html"
            if path.endswith("/"):
                path += "index.html"
            if not (root / path).exists():
                problems[page].append(f"broken link: {link}")
            elif parsed.fragment and path in reports and unquote(parsed.fragment) not in reports[path]["ids"]:
                problems[page].append(f"broken anchor: {link}")
    return {page: found for page, found in problems.items() if found}
