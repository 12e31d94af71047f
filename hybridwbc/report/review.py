"""The review page of an analysis: one self-contained HTML file (opens from disk, no server).

It shows, per sample, the differential (counts, percentages, 95% Wilson intervals, flags); the
cell galleries, one per class with the ``uncertain`` cells first, each thumbnail outlined (cell
black, nucleus white) with a class selector; and the fields with each cell's box coloured by its
class. Moving a cell to another class (its selector) moves its thumbnail to that gallery, recolours
its box and updates the verified counts; *Download corrections* saves ``corrections.csv`` with one
row per cell: ``cell_id, sample, field, predicted, verified`` (``not_wbc`` marks a detection that
is not a white cell). Plain HTML and JavaScript; images are embedded as base64 JPEG.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

from hybridwbc.data.atomic import atomic_path
from hybridwbc.report.geojson import class_colour

__all__ = ["write_review", "NOT_WBC"]

#: The label a reviewer gives a detection that is not a white cell.
NOT_WBC = "not_wbc"

_CSS = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:20px} h2{font-size:17px;margin-top:26px} h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th:first-child,td:first-child{text-align:left} .flag{color:#b00;font-weight:600}
.gallery{display:flex;flex-wrap:wrap;gap:6px;min-height:24px;border-left:6px solid var(--c);padding-left:6px}
figure.cell{margin:0;width:112px;font-size:11px;text-align:center;border:2px solid transparent}
figure.cell img{width:96px;height:96px;display:block;margin:auto}
figure.cell img.heat{display:none} figure.cell:hover img.heat{display:block}
figure.cell:hover img.thumb:has(+ img.heat){display:none}
figure.cell.corrected{border-color:#e67e00;background:#fff4e0} figure.cell select{width:108px;font-size:11px}
.field{position:relative;display:inline-block;margin:4px} .field img{display:block}
.field svg{position:absolute;left:0;top:0} #bar{position:sticky;top:0;background:#fff;padding:6px 0;z-index:2}
button{font-size:14px;padding:5px 12px}
"""

_JS = """
const COLOURS = JSON.parse(document.getElementById('colours').textContent);
function gallery(label){ return document.querySelector('.gallery[data-label="'+CSS.escape(label)+'"]'); }
function recount(){
  const n = {};
  document.querySelectorAll('figure.cell').forEach(f => {
    const v = f.querySelector('select').value; const key = f.dataset.sample + '\\u0000' + v;
    n[key] = (n[key] || 0) + 1; });
  document.querySelectorAll('td.verified').forEach(td => {
    td.textContent = n[td.dataset.sample + '\\u0000' + td.dataset.label] || 0; });
  document.getElementById('n-corrected').textContent = document.querySelectorAll('figure.corrected').length;
}
function moveCell(sel){
  const f = sel.closest('figure.cell'); const v = sel.value;
  f.classList.toggle('corrected', v !== f.dataset.pred);
  const g = gallery(v); if (g) g.appendChild(f);
  document.querySelectorAll('rect[data-id="'+CSS.escape(f.dataset.id)+'"]').forEach(r => {
    r.setAttribute('stroke', COLOURS[v] || '#a0a0a0'); });
  recount();
}
function csvCell(s){ s = String(s); return /[",\\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
function correctionsCsv(){
  const rows = [['cell_id','sample','field','predicted','verified']];
  document.querySelectorAll('figure.cell').forEach(f => rows.push(
    [f.dataset.id, f.dataset.sample, f.dataset.field, f.dataset.pred, f.querySelector('select').value]));
  return rows.map(r => r.map(csvCell).join(',')).join('\\n') + '\\n';
}
function download(){
  const blob = new Blob([correctionsCsv()], {type: 'text/csv'});
  const a = document.createElement('a'); a.href = URL.createObjectURL(blob); a.download = 'corrections.csv';
  document.body.appendChild(a); a.click(); a.remove();
}
document.querySelectorAll('figure.cell select').forEach(s => s.addEventListener('change', () => moveCell(s)));
document.getElementById('download').addEventListener('click', download);
recount();
"""


def _hex(rgb) -> str:
    return "#%02x%02x%02x" % tuple(rgb)


def _fmt(v, digits=1) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    return "–" if not math.isfinite(f) else f"{f:.{digits}f}"


def _interval(lo, hi) -> str:
    return "–" if _fmt(lo) == "–" else f"{_fmt(lo)}–{_fmt(hi)}"


def _differential(samples, classes) -> str:
    out = []
    for _, s in samples.iterrows():
        sample = html.escape(str(s["sample"]))
        flags = str(s.get("flags", "") or "")
        out.append(f"<h3>Sample {sample}: {int(s['n_counted'])} cells counted, {int(s['n_uncertain'])} uncertain, "
                   f"{int(s['n_border'])} on the border, {int(s['n_fields'])} fields "
                   f"({int(s['n_error_fields'])} unreadable)"
                   + (f" <span class='flag'>flags: {html.escape(flags)}</span>" if flags else "") + "</h3>")
        out.append("<table class='differential'><tr><th>class</th><th>n</th><th>%</th><th>95% CI (Wilson)</th>"
                   "<th>verified n</th></tr>")
        for c in [*classes, "uncertain", NOT_WBC]:
            ce = html.escape(c)
            verified = f"<td class='verified' data-sample='{sample}' data-label='{ce}'></td>"
            if c in classes:
                out.append(f"<tr><td>{ce}</td><td class='n'>{int(s[f'n_{c}'])}</td><td>{_fmt(s[f'pct_{c}'])}</td>"
                           f"<td>{_interval(s[f'ci_low_{c}'], s[f'ci_high_{c}'])}</td>{verified}</tr>")
            else:
                n = int(s["n_uncertain"]) if c == "uncertain" else 0
                out.append(f"<tr><td>{ce}</td><td class='n'>{n}</td><td></td><td></td>{verified}</tr>")
        if not math.isnan(float(s.get("blast_pct", float("nan")))):
            out.append(f"<tr><td>blasts</td><td></td><td>{_fmt(s['blast_pct'])}</td>"
                       f"<td>{_interval(s['blast_ci_low'], s['blast_ci_high'])}</td><td></td></tr>")
        out.append("</table>")
    return "\n".join(out)


def _figure(cell: dict, options: list) -> str:
    label = cell["label"] if cell["status"] == "ok" else "uncertain"
    conf = cell.get("confidence")
    flags = [f for f in ("border", "overlap") if str(cell.get(f)).lower() == "true"]
    guess = f"{cell['guess']}? " if label == "uncertain" and cell.get("guess") else ""
    caption = html.escape(guess) + " ".join([_fmt(conf, 2), *flags])
    sel = "".join(f"<option value='{html.escape(o)}'{' selected' if o == label else ''}>{html.escape(o)}</option>"
                  for o in options)
    attrs = " ".join(f"data-{k}='{html.escape(str(v), quote=True)}'" for k, v in
                     (("id", cell["cell_id"]), ("sample", cell["sample"]), ("field", cell["field"]), ("pred", label)))
    title = html.escape(f"{cell['cell_id']}: {cell.get('reason') or label}", quote=True)
    heat = (f"<img class='heat' alt='heat map of {html.escape(cell['cell_id'], quote=True)}' "
            f"src='data:image/jpeg;base64,{cell['heat']}'>" if cell.get("heat") else "")
    return (f"<figure class='cell' {attrs} title='{title}'><img class='thumb' "
            f"alt='{html.escape(cell['cell_id'], quote=True)}' "
            f"src='data:image/jpeg;base64,{cell['thumb']}'>{heat}<figcaption>{caption}</figcaption>"
            f"<select>{sel}</select></figure>")


def _cells(source):
    """The cells of ``source``: a list of dicts, or a JSON-lines file of them (read lazily)."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
    else:
        yield from source


def _shown_label(c: dict, options) -> str:
    return c["label"] if c["status"] == "ok" and c["label"] in options else "uncertain"


def _write_galleries(out, source, classes: list) -> None:
    """One gallery per label, ``uncertain`` first: one pass to count, one pass per label to write."""
    options = ["uncertain", *classes, NOT_WBC]
    counts = {o: 0 for o in options}
    for c in _cells(source):
        counts[_shown_label(c, options)] += 1
    for o in options:
        colour = _hex(class_colour(o, classes))
        out.write(f"<h3>{html.escape(o)} ({counts[o]})</h3><div class='gallery' data-label='{html.escape(o)}' "
                  f"style='--c:{colour}'>")
        if counts[o]:
            for c in _cells(source):
                if _shown_label(c, options) == o:
                    out.write(_figure(c, options))
        out.write("</div>\n")


def _write_fields(out, fields: list, source, classes: list) -> None:
    shown = {(f["sample"], f["field"]): [] for f in fields}
    for c in _cells(source):
        key = (c["sample"], c["field"])
        if key in shown:
            shown[key].append(c)
    for f in fields:
        w, h = int(f["width"]), int(f["height"])
        rects = []
        for c in shown[(f["sample"], f["field"])]:
            label = c["label"] if c["status"] == "ok" else "uncertain"
            rects.append(f"<rect data-id='{html.escape(c['cell_id'], quote=True)}' x='{c['col0']}' y='{c['row0']}' "
                         f"width='{int(c['col1']) - int(c['col0'])}' height='{int(c['row1']) - int(c['row0'])}' "
                         f"fill='none' stroke-width='{max(2, w // 200)}' stroke='{_hex(class_colour(label, classes))}'>"
                         f"<title>{html.escape(c['cell_id'])}: {html.escape(label)}</title></rect>")
        name = html.escape(f"{f['sample']}/{f['field']}")
        out.write(f"<div class='field' title='{name}'><img src='data:image/jpeg;base64,{f['thumb']}' width='480'>"
                  f"<svg width='480' height='{round(480 * h / max(1, w))}' viewBox='0 0 {w} {h}'>"
                  f"{''.join(rects)}</svg><div>{name}</div></div>\n")


def write_review(path: str | os.PathLike, classes, samples, cells, fields: list,
                 title: str = "hybridwbc review") -> Path:
    """Write the review page (see the module docstring) to ``path``, streaming the cells; returns the path.

    Parameters
    ----------
    path : path-like
    classes : sequence of str
    samples : DataFrame
        ``samples.csv`` rows (:func:`hybridwbc.evaluate.differential.differential` columns).
    cells : list of dict, or path-like
        ``cells.csv`` rows, each with ``thumb`` (base64 JPEG); or a JSON-lines file of them, read a few
        times and never held whole, so a page of any number of cells is written in bounded memory.
    fields : list of dict
        The fields shown: ``sample``, ``field``, ``thumb`` (base64 JPEG, 480 px wide), ``height``, ``width``.
    """
    classes = list(classes)
    colours = {o: _hex(class_colour(o, classes)) for o in ["uncertain", *classes, NOT_WBC]}
    legend = " ".join(f"<span style='color:{v}'>■ {html.escape(k)}</span>" for k, v in colours.items())
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        out.write("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
                  + _CSS + "</style></head><body>"
                  + f"<h1>{html.escape(title)}</h1><div id='bar'><button id='download'>Download corrections</button> "
                  + "cells corrected: <span id='n-corrected'>0</span>. " + legend + "</div>"
                  + "<h2>Differential</h2>" + _differential(samples, classes)
                  + "<h2>Cells (uncertain first); move a cell by choosing its class</h2>")
        _write_galleries(out, cells, classes)
        out.write(f"<h2>Fields ({len(fields)} shown)</h2>")
        _write_fields(out, fields, cells, classes)
        out.write("<script type='application/json' id='colours'>" + json.dumps(colours).replace("</", "<\\/")
                  + "</script><script>" + _JS + "</script></body></html>")
    return path
