#!/usr/bin/python3
"""Loads a study's report.html in a real headless browser and checks what a reader would see.

    /usr/bin/python3 tests/report/browser_test.py runs/demo [--require] [--screenshot docs/img/report.png]

Drives Debian's `chromium` over the DevTools protocol (python3-websocket) with the network off: only the file:// page
itself may load. One line per check, "PASS name" or "FAIL name: why", then "N passed, M failed"; exit 1 when any
check failed. Without a browser (or without python3-websocket) it prints SKIP and exits 0, or 1 with --require (CI).

Checks: the page logs no console error or exception and requests nothing from the network; every variant of
results.json is in the table and in the loss curves (or their fallback table when the page was written without
Chart.js), on a log scale with a seed band and values on hover; sorting a column reorders the rows; choosing another
head (or colour scale) changes the map's pixels, and hovering a cell names it; the symmetric variants show
max|S-S^T| = 0; the KV-cache bars carry results.json's numbers; the (X)+ temperatures are shown (or their absence).
"""
import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def find_browser():
    for name in (os.environ.get("CHROME"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class DevTools:
    """One page of a headless browser, over the DevTools websocket (flattened target session)."""

    def __init__(self, browser, width, height):
        import websocket  # python3-websocket

        self.profile = tempfile.mkdtemp(prefix="qkvlab_browser_")
        args = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--mute-audio", "--hide-scrollbars",
                "--remote-debugging-port=0", "--remote-allow-origins=*", "--user-data-dir=" + self.profile,
                # the network off: every host name fails to resolve and every proxy connection is refused
                "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                "--window-size=%d,%d" % (width, height), "about:blank"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + 30
        while not (os.path.exists(port_file) and len(open(port_file).read().split("\n")) >= 2):
            if self.proc.poll() is not None or time.time() > deadline:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
                self.close()
                raise RuntimeError("the browser did not start: " + (err.strip().splitlines() or ["timeout"])[-1])
            time.sleep(0.1)
        port, path = open(port_file).read().split("\n")[:2]
        self.ws = websocket.create_connection("ws://127.0.0.1:%s%s" % (port, path), timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def call(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and getattr(self, "session", None):
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError("%s: %s" % (method, reply["error"].get("message")))
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(e["method"] == method for e in self.events):
                return True
            self.ws.settimeout(max(0.1, deadline - time.time()))
            try:
                reply = json.loads(self.ws.recv())
            except Exception:
                break
            if "method" in reply:
                self.events.append(reply)
        self.ws.settimeout(60)
        return any(e["method"] == method for e in self.events)

    def js(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError("script error: " + r["exceptionDetails"].get("exception", {}).get("description",
                               r["exceptionDetails"].get("text", "?")).splitlines()[0])
        return r["result"].get("value")

    def close(self):
        try:
            if getattr(self, "ws", None):
                self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


# The map canvas of a panel, as a hash of its pixels.
MAP_HASH = """(async () => {
  const c = document.getElementById('map-%s');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const h = await crypto.subtle.digest('SHA-256', d);
  return c.width + 'x' + c.height + ':' + Array.from(new Uint8Array(h)).map((b) => b.toString(16).padStart(2, '0')).join('');
})()"""

# How many pixels of a canvas are not white/transparent (a chart that drew nothing has none).
INK = """(() => {
  const c = document.getElementById('%s');
  if (!c || c.width === 0) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (d[i] < 240 || d[i + 1] < 240 || d[i + 2] < 240)) ++n;
  return n;
})()"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", help="a study's output folder holding report.html and results.json")
    ap.add_argument("--require", action="store_true", help="fail (exit 1) instead of skipping without a browser")
    ap.add_argument("--screenshot", metavar="PATH", help="also save a PNG of the page as first opened")
    ap.add_argument("--width", type=int, default=1280, help="window width in CSS pixels (default 1280)")
    ap.add_argument("--screenshot-height", type=int, default=0,
                    help="height of the screenshot from the top of the page (default: down to the attention maps)")
    args = ap.parse_args()

    page = os.path.abspath(os.path.join(args.dir, "report.html"))
    results_path = os.path.join(args.dir, "results.json")
    if not os.path.isfile(page) or not os.path.isfile(results_path):
        print("browser_test: error: %s needs report.html and results.json (run qkvlab study or report)" % args.dir,
              file=sys.stderr)
        return 2
    with open(results_path) as f:
        results = json.load(f)
    variants = results["variants"]

    browser = find_browser()
    missing = None
    if not browser:
        missing = "no chromium on PATH (Debian: bash tools/deps.sh --report)"
    else:
        try:
            import websocket  # noqa: F401
        except ImportError:
            missing = "python3-websocket is not installed for %s (Debian: bash tools/deps.sh --report)" % sys.executable
    if missing:
        print("SKIP browser test: " + missing)
        return 1 if args.require else 0

    passed, failed = 0, 0

    def check(name, ok, why=""):
        nonlocal passed, failed
        if ok:
            passed += 1
            print("PASS " + name)
        else:
            failed += 1
            print("FAIL %s: %s" % (name, why))

    dt = DevTools(browser, args.width, 900)
    try:
        for domain in ("Runtime", "Log", "Page", "Network"):
            dt.call(domain + ".enable")
        dt.call("Network.emulateNetworkConditions",
                {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        dt.call("Page.navigate", {"url": "file://" + page})
        loaded = dt.wait_event("Page.loadEventFired", 60)
        ready = False
        deadline = time.time() + 30
        while loaded and time.time() < deadline:
            if dt.js("document.body && document.body.getAttribute('data-ready')") == "1":
                ready = True
                break
            time.sleep(0.1)
        dt.wait_event("never", 0.3)  # collect what the page logged while drawing
        problems = []
        for e in dt.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                problems.append("exception: " + d.get("exception", {}).get("description", d.get("text", "?")).splitlines()[0])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                problems.append("console.%s: %s" % (p["type"], " ".join(str(a.get("value", a.get("description", "")))
                                                                        for a in p.get("args", []))))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                problems.append("log: " + p["entry"].get("text", ""))
        requests = [e["params"]["request"]["url"] for e in dt.events if e["method"] == "Network.requestWillBeSent"]
        remote = [u for u in requests if not (u.startswith("file:") or u.startswith("data:") or u == "about:blank")]
        check("page loads and draws (body[data-ready])", ready, "not ready after 30 s" + (
            "" if loaded else " (no load event)"))
        check("no console errors or exceptions", not problems, "; ".join(problems[:3]))
        check("no network requests", not remote, ", ".join(remote[:3]))
        if not ready:
            raise RuntimeError("the page did not finish drawing")

        ids = [v["variant"] for v in variants]
        names = [v["paper_name"] for v in variants]
        rows = dt.js("Array.from(document.querySelectorAll('#results-table tbody tr')).map(r => r.dataset.variant)")
        check("table: every variant of results.json (%d)" % len(ids), sorted(rows or []) == sorted(ids),
              "rows %s, expected %s" % (rows, ids))
        headers = dt.js("Array.from(document.querySelectorAll('#results-table thead th')).map(t => t.textContent)")
        want = ["variant", "paper name", "parameters", "KV cache / token", "KV reduction", "max abs(S-S^T)",
                "train time"]
        absent = [h for h in want if h not in (headers or [])]
        check("table: the terminal table's columns", not absent and any(results["metric"] in h for h in headers),
              "missing %s in %s" % (absent, headers))
        cells = dt.js("Array.from(document.querySelectorAll('#results-table tbody tr')).map(r => "
                      "[r.dataset.variant, r.cells[2].textContent])")
        by_id = {v["variant"]: v for v in variants}
        bad = [c for c in cells if c[1].replace(",", "") != str(by_id[c[0]]["parameters"])]
        check("table: parameter counts from results.json", not bad, "mismatch %s" % bad[:2])

        # Sorting: a click on "parameters" orders ascending, a second click descending.
        dt.js("Array.from(document.querySelectorAll('#results-table thead th')).find(t => t.textContent === "
              "'parameters').click()")
        up = dt.js("Array.from(document.querySelectorAll('#results-table tbody tr')).map(r => "
                   "+r.cells[2].textContent.replace(/,/g, ''))")
        dt.js("Array.from(document.querySelectorAll('#results-table thead th')).find(t => t.textContent === "
              "'parameters').click()")
        down = dt.js("Array.from(document.querySelectorAll('#results-table thead th')).length && "
                     "Array.from(document.querySelectorAll('#results-table tbody tr')).map(r => "
                     "+r.cells[2].textContent.replace(/,/g, ''))")
        check("table: sorts by a column", up == sorted(up) and down == sorted(up, reverse=True),
              "ascending %s, descending %s" % (up, down))

        charts = dt.js("typeof window.Chart === 'function'")
        if charts:
            labels = dt.js("Chart.getChart('loss-chart').data.datasets.filter(d => d._kind === 'mean')"
                           ".map(d => [d.label, d.data.length])")
            check("loss curves: every variant, each a line",
                  sorted(l for l, _ in labels) == sorted(names) and all(n >= 2 for _, n in labels),
                  "curves %s, expected %s" % (labels, names))
            scale = dt.js("Chart.getChart('loss-chart').scales.y.type")
            check("loss curves: log scale", scale == "logarithmic", "y scale is %s" % scale)
            if results.get("seeds", 1) > 1:
                bands = dt.js("Chart.getChart('loss-chart').data.datasets.filter(d => d._kind === 'high').length")
                check("loss curves: a seed band per variant", bands == len(ids), "%s bands" % bands)
            ink = dt.js(INK % "loss-chart")
            check("loss curves: drawn", ink > 2000, "%s coloured pixels" % ink)
            tip = dt.js("""(() => { const c = Chart.getChart('loss-chart');
                const m = c.getDatasetMeta(c.data.datasets.findIndex(d => d._kind === 'mean'));
                const p = m.data[Math.floor(m.data.length / 2)];
                c.tooltip.setActiveElements([{datasetIndex: m.index, index: Math.floor(m.data.length / 2)}], {x: p.x, y: p.y});
                c.update(); return c.tooltip.body ? c.tooltip.body.map(b => b.lines.join(' ')).join(' | ') : ''; })()""")
            check("loss curves: hover shows values", bool(tip) and any(ch.isdigit() for ch in tip), "tooltip %r" % tip)
            kv = dt.js("Chart.getChart('kv-chart').data.datasets[0].data")
            check("KV-cache bars: results.json's bytes per token", kv == [v["kv_bytes_per_token"] for v in variants],
                  "bars %s" % kv)
        else:
            rows = dt.js("Array.from(document.querySelectorAll('#loss-table tbody tr')).map(r => r.dataset.variant)")
            check("loss table (no Chart.js): every variant", sorted(rows or []) == sorted(ids), "rows %s" % rows)
            note = dt.js("document.getElementById('fallback-note').hidden ? '' : "
                         "document.getElementById('fallback-note').textContent")
            check("fallback note says Chart.js is missing", "Chart.js" in (note or ""), "note %r" % note)
            kv = dt.js("Array.from(document.querySelectorAll('#kv-table tbody tr')).length")
            check("KV-cache table (no Chart.js): every variant", kv == len(ids), "%s rows" % kv)

        has_maps = dt.js("!!document.getElementById('map-a')")
        if has_maps:
            heads = dt.js("Array.from(document.getElementById('a-head').options).map(o => o.value)")
            before = dt.js(MAP_HASH % "a")
            stat_before = dt.js("document.getElementById('asym-a').textContent")
            current = dt.js("document.getElementById('a-head').value")
            other = next((h for h in heads if h != current), None)
            if other is None:
                check("maps: choosing another head changes the map", False, "only one head: %s" % heads)
            else:
                dt.js("(() => { const s = document.getElementById('a-head'); s.value = %s; "
                      "s.dispatchEvent(new Event('change')); })()" % json.dumps(other))
                after = dt.js(MAP_HASH % "a")
                stat_after = dt.js("document.getElementById('asym-a').textContent")
                check("maps: choosing another head changes the map", before != after and ("head " + other) in stat_after,
                      "pixels %s -> %s, caption %r -> %r" % (before[:20], after[:20], stat_before, stat_after))
            shown = dt.js(MAP_HASH % "a")
            dt.js("(() => { const s = document.getElementById('a-scale'); s.value = s.value === 'one' ? 'row' : 'one'; "
                  "s.dispatchEvent(new Event('change')); })()")
            check("maps: another colour scale redraws the map", dt.js(MAP_HASH % "a") != shown, "pixels unchanged")
            hover = dt.js("""(() => { const c = document.getElementById('map-a'); const r = c.getBoundingClientRect();
                c.dispatchEvent(new MouseEvent('mousemove', {clientX: r.right - 3, clientY: r.bottom - 3, bubbles: true}));
                return document.getElementById('readout-a').textContent; })()""")
            check("maps: hover names the cell and its value", "query" in hover and "key" in hover and "p \u2248" in hover,
                  "readout %r" % hover)
            ink = dt.js(INK % "map-a")
            check("maps: the map is drawn", ink > 100, "%s coloured pixels" % ink)
            # Every symmetric variant (Q=K-V, Q=K=V) shows exactly 0 on every head of its first seed.
            sym = [v["variant"] for v in variants if v["variant"] in ("qk", "single")]
            if sym:
                shown = dt.js("""(() => { const out = [];
                  const s = document.getElementById('b-variant');
                  for (const o of Array.from(s.options)) { s.value = o.value; s.dispatchEvent(new Event('change'));
                    out.push([o.textContent, document.getElementById('asym-b').textContent]); }
                  return out; })()""")
                zero = [t for o, t in shown if any("(%s)" % sid in o for sid in sym)]
                check("maps: max|S-S^T| = 0 for the symmetric variants",
                      len(zero) == len(sym) and all("= 0.00" in t and "exactly symmetric" in t for t in zero),
                      "captions %s" % zero)
            seeds = dt.js("Array.from(document.getElementById('a-seed').options).length")
            check("maps: one seed choice per seed", seeds == results.get("seeds", 1), "%s choices" % seeds)

        temp = [v for v in variants if v["variant"].endswith("+")]
        if temp:
            if any("pe_temperature" in v for v in temp):
                vals = dt.js("Array.from(document.querySelectorAll('#temperature-values tbody tr')).map(r => "
                             "r.dataset.variant)")
                check("temperature: every (X)+ variant", sorted(vals or []) == sorted(
                    v["variant"] for v in temp if "pe_temperature" in v), "rows %s" % vals)
            else:
                note = dt.js("document.getElementById('temperature-table').textContent")
                check("temperature: says none were recorded", "no learned temperatures" in (note or ""), note)

        if args.screenshot:
            # As a reader first sees it: reloaded, nothing sorted, hovered or picked.
            dt.events = []
            dt.call("Page.reload")
            dt.wait_event("Page.loadEventFired", 60)
            deadline = time.time() + 30
            while dt.js("document.body && document.body.getAttribute('data-ready')") != "1" and time.time() < deadline:
                time.sleep(0.1)
            height = args.screenshot_height or dt.js(
                "Math.ceil(document.getElementById('maps').getBoundingClientRect().bottom + window.scrollY + 12)")
            height = min(height, dt.js("document.documentElement.scrollHeight"))
            shot = dt.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                      "clip": {"x": 0, "y": 0, "width": args.width, "height": height,
                                                               "scale": 1}})
            os.makedirs(os.path.dirname(os.path.abspath(args.screenshot)), exist_ok=True)
            with open(args.screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            print("wrote %s (%d x %d, %d bytes)" % (args.screenshot, args.width, height, os.path.getsize(args.screenshot)))
    except Exception as e:  # the browser or the page broke: one failed check, not a traceback
        check("browser session", False, str(e))
    finally:
        dt.close()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
