"""``GET /``: the status page, one self-contained HTML document rendered from a snapshot.

No script, no font, no stylesheet from elsewhere (servers often have no internet): inline CSS,
a meta refresh every ``REFRESH`` seconds, a layout that folds into one column on a phone.
Each unit carries its health as colour and word (``data-health``) for people and tests.
"""

from __future__ import annotations

import time

from sdwatch import __version__
from sdwatch.quantities import format_duration, format_size
from sdwatch.states import Health
from sdwatch.status import ProbeStatus, Snapshot, UnitStatus

REFRESH = 5
# html.escape's table: the html package would also load its 2,000 named entities (0.5 MiB)
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                          "'": "&#x27;"})
_COLOURS = {Health.HEALTHY: "#1a7f37", Health.STARTING: "#9a6700", Health.FAILING: "#cf222e",
            Health.FAILED: "#cf222e", Health.GAVE_UP: "#8250df", Health.UNMONITORED: "#57606a",
            Health.STOPPED: "#57606a", Health.MISSING: "#57606a", Health.UNKNOWN: "#57606a"}

_STYLE = """
body{font:15px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f8fa;
color:#1f2328}
header{padding:12px 16px;background:#24292f;color:#fff}
header h1{font-size:18px;margin:0}
header p{margin:4px 0 0;font-size:13px;opacity:.85}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:12px;
padding:12px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px 12px;
border-left:6px solid var(--c)}
h2{font-size:16px;margin:0 0 6px;display:flex;justify-content:space-between;gap:8px;
word-break:break-all}
.health{color:#fff;background:var(--c);border-radius:12px;padding:0 10px;font-size:13px;
white-space:nowrap;align-self:center}
dl{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;margin:0;font-size:13px}
dt{color:#57606a}dd{margin:0;word-break:break-word}
.bad{color:#cf222e}.ok{color:#1a7f37}
footer{padding:0 16px 16px;font-size:12px;color:#57606a}
"""


def escape(text: str) -> str:
    """``text`` as HTML text or attribute value, as html.escape(text, quote=True) gives it."""
    return text.translate(_ESCAPES)


def render(snap: Snapshot) -> bytes:
    """Given a snapshot, return the page."""
    s = snap.system
    bad = sum(1 for u in snap.units if not u.health.ok)
    summary = (f"{len(snap.units)} units, all healthy" if not bad else
               f"{len(snap.units)} units, {bad} need attention")
    title = f"{'✔' if not bad else '✖'} {s.hostname}: {summary}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f'<meta http-equiv="refresh" content="{REFRESH}">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<header><h1>sdwatch on {escape(s.hostname)}</h1>",
        f'<p id="summary">{escape(summary)} · load {s.load[0]:.2f} · memory '
        f"{format_size(s.memory_used)} of {format_size(s.memory_total)} · "
        f"{_clock(snap.generated_at)}</p></header><main>",
    ]
    parts += [_unit(u, snap.generated_at) for u in snap.units]
    if not snap.units:
        parts.append("<p>No unit is watched: configure some in /etc/sdwatch/sdwatch.toml.</p>")
    parts.append(f"</main><footer>sdwatch {escape(__version__)} · refreshes every {REFRESH} s"
                 " · <a href=\"api/v1/status\">JSON</a> · <a href=\"metrics\">metrics</a>"
                 "</footer></body></html>")
    return "\n".join(parts).encode()


def _unit(u: UnitStatus, now: float) -> str:
    colour = _COLOURS.get(u.health, "#57606a")
    rows: list[tuple[str, str]] = [("systemd", escape(f"{u.active_state} ({u.sub_state})"))]
    if u.problem:
        rows.append(("problem", f'<span class="bad">{escape(u.problem)}</span>'))
    for p in u.probes:
        rows.append((f"probe {escape(p.name)}", _probe(p, now)))
    if u.last_failure and u.last_failure.at is not None:
        rows.append(("last failure", f"{escape(u.last_failure.reason)} "
                                     f"({_ago(u.last_failure.at, now)})"))
    restarts = f"{u.restarts_systemd} by systemd"
    if u.restarts_sdwatch is not None:
        restarts += f", {u.restarts_sdwatch} by sdwatch"
    rows.append(("restarts", restarts))
    if u.uptime is not None:
        rows.append(("uptime", format_duration(u.uptime)))
    if u.memory is not None:
        rows.append(("memory", format_size(u.memory)))
    if u.cpu_percent is not None:
        rows.append(("cpu", f"{u.cpu_percent:.1f}% {escape(u.cpu_window)}"))
    body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return (f'<section class="unit" data-unit="{escape(u.name)}" '
            f'data-health="{u.health.value}" style="--c:{colour}">'
            f'<h2><span>{escape(u.name)}</span><span class="health">{u.health.value}</span></h2>'
            f"<dl>{body}</dl></section>")


def _probe(p: ProbeStatus, now: float) -> str:
    last = p.last
    if last is None or last.at is None:
        return f"{escape(p.kind)}: no result yet"
    ms = (last.duration or 0) * 1000
    out = (f'<span class="{"ok" if last.ok else "bad"}">{escape(last.outcome or "")}'
           f"</span> in {ms:.1f} ms: {escape(last.reason)} ({_ago(last.at, now)})")
    return out


def _ago(at: float, now: float) -> str:
    return f"{format_duration(max(0.0, now - at))} ago"


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
