"""A `Report` as one self-contained HTML page: styles, script and data inline, nothing fetched.

Tables, totals, the memory plot (an SVG) and the code are written here, so the numbers are in
the page itself (``data-*`` attributes carry the exact values); the script (``page/report.js``)
draws the joint graph on a canvas from the report's JSON and makes the tables sortable. Section
ids: ``summary``, ``stages``, ``graph``, ``saved``, ``memory``, ``code``.
"""
from __future__ import annotations

import json
from collections import Counter
from html import escape
from importlib import resources
from pathlib import Path
from typing import Union

from .data import PLACEMENTS, MemoryCurve, Report
from .saved import human_bytes

__all__ = ["format_html", "write_html"]

_CURVE_COLORS = ("#2f6fdf", "#d92d20", "#667085", "#f08c00", "#1f9d63", "#8a4fd6", "#0e9384", "#c11574")
_PLOT = {"width": 960, "height": 300, "left": 70, "right": 950, "top": 14, "bottom": 270}


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("page", name).read_text(encoding="utf-8")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _cards(report: Report) -> str:
    totals = report.totals
    ours = report.memory[0].peak if report.memory else None
    cards = [("stages", _ms(sum(s.seconds for s in report.stages)), "total compile and first run"),
             ("nodes", str(len(report.joint.nodes)), "joint graph nodes"),
             ("saved", human_bytes(totals.saved_bytes), f"{totals.count} saved values ({totals.input_count} inputs)")]
    if totals.eager_bytes is not None:
        cards.append(("eager", human_bytes(totals.eager_bytes), f"eager autograd saves ({totals.eager_count} tensors)"))
    cards.append(("recomputed", str(totals.recomputed_ops), f"ops recomputed in backward, {totals.recompute_flops:.3g} FLOPs"))
    if ours is not None:
        cards.append(("peak", human_bytes(ours), "predicted peak above the inputs"))
    return "".join(f'<div class="card" data-card="{key}"><div class="v">{escape(value)}</div>'
                   f'<div class="k">{escape(note)}</div></div>' for key, value, note in cards)


def _stages(report: Report) -> str:
    longest = max((s.seconds for s in report.stages), default=0) or 1
    rows = "".join(
        f'<tr data-stage="{escape(s.stage)}" data-seconds="{s.seconds!r}"><td>{escape(s.stage)}</td>'
        f'<td class="num">{_ms(s.seconds)}</td><td style="width:40%"><div class="bar" '
        f'style="width:{100 * s.seconds / longest:.1f}%"></div></td><td class="muted">{escape(s.detail)}</td></tr>'
        for s in report.stages)
    total = sum(s.seconds for s in report.stages)
    return (f'<table id="stages-table"><thead><tr><th>stage</th><th class="num">time</th><th></th><th>detail</th></tr>'
            f'</thead><tbody>{rows}</tbody><tfoot><tr><td>total</td><td class="num" data-seconds="{total!r}">'
            f'{_ms(total)}</td><td></td><td></td></tr></tfoot></table>')


def _graph(report: Report) -> str:
    counts = Counter(n.placement for n in report.joint.nodes)
    legend = "".join(f'<span data-placement="{p}" data-count="{counts[p]}"><i style="background:var(--{p})"></i>'
                     f'{p} {counts[p]}</span>' for p in PLACEMENTS if counts[p])
    saved = sum(n.saved for n in report.joint.nodes)
    return (f'<div class="toolbar"><input id="graph-search" placeholder="search a node, op or parameter; Enter">'
            f'<span id="graph-search-status" class="muted"></span><button id="graph-fit">fit</button>'
            f'<button id="graph-expand">expand all</button><button id="graph-collapse">overview</button></div>'
            f'<div class="legend">{legend}<span><i style="background:var(--cut)"></i>cut, saved values '
            f'{saved}</span></div>'
            f'<p class="muted">{len(report.joint.nodes)} nodes, {len(report.joint.edges)} edges, '
            f'{len(report.joint.groups)} groups. Forward left of the red line, backward right; red edges cross the cut. '
            f'Wheel zooms, drag pans, click a group box to expand it, shift-click a node to collapse its group.</p>'
            f'<div class="graph-wrap"><canvas id="graph-canvas" data-nodes="{len(report.joint.nodes)}" '
            f'data-edges="{len(report.joint.edges)}"></canvas><div id="graph-info"></div></div>')


def _saved(report: Report) -> str:
    columns = (("name", "text"), ("module", "text"), ("shape", "text"), ("dtype", "text"), ("bytes", "num"),
               ("producer", "text"), ("why saved", "text"), ("where", "text"))
    head = "".join(f'<th class="sortable{" num" if kind == "num" else ""}" data-type="{kind}">{name}</th>'
                   for name, kind in columns)
    rows = []  # largest first; inputs (not counted) last
    for row in sorted(report.saved, key=lambda r: (r.is_input, -r.nbytes)):
        where = "input (not counted)" if row.is_input else "host" if row.offloaded else "device"
        cells = (row.name, row.module, row.shape, row.dtype, row.nbytes, row.producer, row.reason, where)
        rows.append("<tr>" + "".join(
            f'<td class="num" data-sort="{value}">{human_bytes(value)}</td>' if isinstance(value, int)
            else f'<td data-sort="{escape(str(value))}">{escape(str(value))}</td>' for value in cells) + "</tr>")
    totals = report.totals
    eager = ""
    if totals.eager_bytes is not None:
        ratio = totals.saved_bytes / totals.eager_bytes if totals.eager_bytes else float("nan")
        eager = (f'<p id="eager-comparison" data-eager-bytes="{totals.eager_bytes}" data-eager-count='
                 f'"{totals.eager_count}">Eager autograd saves {totals.eager_count} tensors, '
                 f'{human_bytes(totals.eager_bytes)}; ours / eager = <b>{ratio:.2f}</b>.</p>')
    return (f'<div class="scroll"><table id="saved-table" class="sortable-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody><tfoot><tr id="saved-totals" data-count="{totals.count}" '
            f'data-input-count="{totals.input_count}" data-saved-bytes="{totals.saved_bytes}" '
            f'data-offloaded-bytes="{totals.offloaded_bytes}"><td colspan="4">{totals.count} saved values '
            f'({totals.input_count} inputs, not counted)</td><td class="num">{human_bytes(totals.saved_bytes)}</td>'
            f'<td colspan="3">{human_bytes(totals.offloaded_bytes)} of it in host memory</td></tr></tfoot></table></div>'
            f'{eager}<p id="recomputed" data-ops="{totals.recomputed_ops}" data-flops="{totals.recompute_flops}">'
            f'Recomputed in backward: {totals.recomputed_ops} ops, {totals.recompute_flops:.3g} FLOPs.</p>')


def _points(values: tuple, start: float, span: float, scale: float) -> list[str]:
    bottom = _PLOT["bottom"]
    step = span / max(1, len(values))
    return [f"{start + i * step:.1f},{bottom - v * scale:.1f} {start + (i + 1) * step:.1f},{bottom - v * scale:.1f}"
            for i, v in enumerate(values)]


def _memory(curves: tuple[MemoryCurve, ...]) -> str:
    if not curves:
        return '<p class="muted">No backward: nothing is saved, no timeline.</p>'
    left, right, top, bottom = _PLOT["left"], _PLOT["right"], _PLOT["top"], _PLOT["bottom"]
    highest = max(c.peak for c in curves) or 1
    scale = (bottom - top) / highest
    half = (right - left) / 2
    parts = [f'<line class="axis" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>',
             f'<line class="axis" x1="{left + half}" y1="{top}" x2="{left + half}" y2="{bottom}" stroke-dasharray="4 3"/>',
             f'<text x="{left + 4}" y="{bottom + 16}">forward (each op)</text>',
             f'<text x="{left + half + 4}" y="{bottom + 16}">backward (each op)</text>']
    for k in range(5):
        value = highest * k / 4
        y = bottom - value * scale
        parts.append(f'<line class="axis" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" opacity="0.5"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{human_bytes(value)}</text>')
    legend = []
    for i, curve in enumerate(curves):
        color = _CURVE_COLORS[i % len(_CURVE_COLORS)]
        points = _points(curve.forward, left, half, scale) + _points(curve.backward, left + half, half, scale)
        dash = ' stroke-dasharray="5 3"' if curve.measured else ""
        parts.append(f'<polyline data-curve="{i}" data-peak="{curve.peak}" stroke="{color}"{dash} '
                     f'points="{" ".join(points)}"><title>{escape(curve.label)}</title></polyline>')
        legend.append(f'<span data-curve="{i}" data-label="{escape(curve.label)}" data-peak="{curve.peak}" '
                      f'data-saved-bytes="{curve.saved_bytes}"><i style="background:{color}"></i>'
                      f'{escape(curve.label)}: peak {human_bytes(curve.peak)}, saved {human_bytes(curve.saved_bytes)}'
                      f'</span>')
    parts.append(f'<line class="cursor" x1="-10" x2="-10" y1="{top}" y2="{bottom}" stroke="#98a2b3"/>')
    box = json.dumps({"left": left, "right": right})
    return (f'<div class="legend">{"".join(legend)}</div><div class="memory-plot">'
            f'<svg viewBox="0 0 {_PLOT["width"]} {_PLOT["height"]}" data-box=\'{box}\'>{"".join(parts)}</svg></div>'
            f'<div id="memory-hover"></div><p class="muted">Live bytes above the inputs after each op, forward then '
            f'backward, each stretched to the same width; predicted curves from the partition\'s liveness model, '
            f'the dashed one measured on an eager run.</p>')


def _code(report: Report) -> str:
    legend = ""
    if report.input_names:
        legend = ('<p class="muted">inputs: ' + escape(", ".join(f"{p} = {n}" for p, n in report.input_names)) + "</p>")
    blocks = "".join(f'<details data-graph="{g.name}" data-ops="{g.num_ops}"{" open" if i == 0 else ""}><summary>'
                     f'{g.name} graph, {g.num_ops} ops</summary><pre class="code">{escape(g.code)}</pre></details>'
                     for i, g in enumerate(report.code))
    return legend + blocks


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}"><h2>{escape(title)}</h2>{body}</section>'


def format_html(report: Report) -> str:
    """The page, as one string."""
    data = report.to_json().replace("</", "<\\/")
    sub = " &middot; ".join(escape(x) for x in (f"compiler {report.compiler}" if report.compiler else "",
                                                  f"partition {report.partition}" if report.partition else "") if x)
    body = "".join([
        f'<header><h1>aotgraph report: {escape(report.title or "compiled graph")}</h1><div class="sub">{sub}</div></header>',
        f'<div class="cards" id="summary">{_cards(report)}</div>',
        _section("stages", "Stages", _stages(report)),
        _section("graph", "Joint graph: where each node runs", _graph(report)),
        _section("saved", "Saved for backward", _saved(report)),
        _section("memory", "Activation memory timeline", _memory(report.memory)),
        _section("code", "Generated code", _code(report)),
    ])
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>aotgraph report: '
            f'{escape(report.title or "compiled graph")}</title><style>{_asset("report.css")}</style></head><body>'
            f'{body}<script id="report-data" type="application/json">{data}</script>'
            f'<script>{_asset("report.js")}</script></body></html>')


def write_html(report: Report, path: Union[str, Path]) -> None:
    Path(path).write_text(format_html(report), encoding="utf-8")
