"""The HTML of ``report.html``: style, tables, the headline block, one section per part of
the run (figures from :mod:`sea_core.report.figures`) and the whole page (:func:`render_html`)."""
from __future__ import annotations

import html
import json
import math

from sea_core.params import DEPLOY_TARGETS, REPORT, DeployTargets
from sea_core.report.facts import headline, is_num
from sea_core.report.figures import (budget_plot, mean_std_plot, per_class_plot, png, students_plot,
                                     training_plot)

__all__ = ["render_html"]


_CSS = """
body{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif;max-width:1020px;margin:16px auto;
     padding:0 12px;color:#222;line-height:1.4}
h1{margin:0 0 4px}
h2{margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:2px}
table{border-collapse:collapse;margin:6px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f2f2f2}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.key td{font-weight:bold}
table.counts{margin:0}
table.counts td,table.counts th{border-color:#e2e2e2;padding:1px 5px;font-size:85%}
table.counts th{font-weight:normal;color:#444}
td.num{white-space:nowrap}
#headline{border:2px solid #4c72b0;border-radius:6px;padding:10px 16px;background:#f7f9fc}
#headline ul{margin:6px 0;padding-left:20px}
.verdict{font-size:115%;font-weight:bold;padding:6px 10px;border-radius:4px;margin:8px 0}
.verdict.ok{background:#dff0d8;color:#1d5e1d}
.verdict.warn{background:#fcf3d7;color:#7a5200}
.verdict.bad{background:#f8d7da;color:#8a1c24}
.met{color:#1d5e1d;font-weight:bold}
.missed{color:#8a1c24;font-weight:bold}
.note{color:#555;font-size:90%}
img{max-width:100%;height:auto;display:block;margin:6px 0}
code{font-size:90%}
nav{font-size:90%;margin:6px 0}
"""


def _e(v) -> str:
    return html.escape("" if v is None else str(v))


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:.{digits}f}"
    return str(v)


def _duration(seconds) -> str:
    if not is_num(seconds):
        return "n/a"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m} min {s} s" if h else f"{m} min {s} s" if m else f"{seconds:.1f} s"


def _table(header: list[str], rows: list[list], *, num: set[int] = frozenset(), cls: str = "",
           row_classes: list[str] | None = None, wrap_header: bool = False) -> str:
    """An HTML table; cells of ``rows`` are HTML already, ``header`` is text.

    ``wrap_header``: long names (``dead_lettered``) may break after an underscore.
    """
    def head(h):
        return _e(h).replace("_", "_<wbr>") if wrap_header else _e(h)

    out = [f"<table{f' class={chr(39)}{cls}{chr(39)}' if cls else ''}><tr>"]
    out += [f"<th{' class=num' if i in num else ''}>{head(h)}</th>" for i, h in enumerate(header)]
    out.append("</tr>")
    for j, row in enumerate(rows):
        rc = (row_classes or [""] * len(rows))[j]
        out.append(f"<tr{f' class={rc}' if rc else ''}>")
        out += [f"<td{' class=num' if i in num else ''}>{cell}</td>" for i, cell in enumerate(row)]
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _img(title: str, fig) -> str:
    return f"<img alt='{_e(title)}' src='data:image/png;base64,{png(fig)}'>"


def _status(met) -> str:
    if met is None:
        return ""
    return "<span class=met>met</span>" if met else "<span class=missed>missed</span>"


def _headline_html(h: dict) -> str:
    s, mem, board, paper, goals = h["student"], h["memory"], h["board"], h["paper"], h["goals"]
    parts = ["<section id=headline><h1>sea run report</h1>",
             f"<p class='verdict {h['verdict_class']}' id=verdict>{_e(h['verdict'])}</p>"]
    for p in h["problems"]:
        parts.append(f"<p class='verdict bad'>Stage counts disagree: {_e(p)}</p>")
    facts = []
    if s["emb_dim"]:
        win = (f"{s['window_seconds']:.2f}-s window" if s["window_seconds"] is not None
               else "window unknown")
        detail = [x for x in (s["input"], s["head"] and f"{s['head']} head",
                              s["epochs"] is not None and f"trained {s['epochs']} epoch"
                              f"{'s' if s['epochs'] != 1 else ''}",
                              s["deploy_mode"] and f"quantised in '{s['deploy_mode']}' mode") if x]
        teacher = (f" from the <b>{_e(s['teacher'])}</b> teacher" +
                   (f" ({s['teacher_window_seconds']:.2f}-s window)" if s["teacher_window_seconds"] else "")
                   if s["teacher"] else "")
        facts.append(f"<li><b>Student built:</b> SEA-{_e(s['emb_dim'])} ({_e(s['emb_dim'])}-d embedding), "
                     f"{win}"
                     f"{teacher}; {_e(', '.join(detail))}.</li>")
    a = h["auprc"]
    if any(a[r] is not None for r in ("teacher", "student", "int8")):
        line = ", ".join(f"{name} <b>{_fmt(a[r])}</b>" for r, name in
                         (("teacher", "teacher"), ("student", "float student"), ("int8", "int8 student"))
                         if a[r] is not None)
        ratio = (f"; int8 / teacher = <b>{a['int8_over_teacher']:.2f}</b>"
                 if a["int8_over_teacher"] is not None else "")
        facts.append(f"<li><b>Downstream micro-AUPRC</b> ({_e(a['split'])} split, MIL classifier): "
                     f"{line}{ratio}.</li>")
    if h["stages"]:
        check = ("" if not h["checked"] else "; cross-stage counts agree" if not h["problems"]
                 else f"; <b>{len(h['problems'])} cross-stage count problem(s)</b>, see above")
        facts.append(f"<li><b>Stages finished:</b> {len(h['stages'])} ({_e(', '.join(h['stages']))})"
                     f"{check}.</li>")
    if is_num(h["wall_seconds"]):
        inv = (f"; this invocation {_duration(h['this_invocation_seconds'])}"
               if is_num(h["this_invocation_seconds"]) else "")
        facts.append(f"<li><b>Wall time:</b> {_duration(h['wall_seconds'])} (sum of the stages{inv}).</li>")
    dl = h["dead_letters"]
    if dl["inputs"] is not None or dl["count"]:
        of = f" of {dl['inputs']:,} inputs" if dl["inputs"] is not None else ""
        link = " (<a href='#dead-letters'>list</a>)" if dl["listed"] else ""
        facts.append(f"<li><b>Dead-lettered inputs:</b> {dl['count']:,}{of}{link}.</li>")
    parts.append("<ul>" + "".join(facts) + "</ul>")
    if is_num(mem["flash_bytes"]):
        def pct(v, of):
            return f" ({100 * v / of:.0f} % used)" if is_num(v) and of else ""

        rows = [["Flash", f"{mem['flash_bytes']:,} B",
                 f"{_fmt(board['flash_bytes'])} B{pct(mem['flash_bytes'], board['flash_bytes'])}",
                 f"{paper['flash_bytes']:,} B", f"≤ {goals['flash_bytes']:,} B",
                 _status(h["goals_met"]["flash"])]]
        if is_num(mem["arena_bytes"]):
            rows.append(["TFLM arena (part of RAM)", f"{mem['arena_bytes']:,} B", "", "",
                         f"≤ {goals['arena_bytes']:,} B", _status(h["goals_met"]["arena"])])
        rows.append(["Total RAM", f"{mem['ram_bytes']:,} B",
                     f"{_fmt(board['ram_bytes'])} B{pct(mem['ram_bytes'], board['ram_bytes'])}",
                     f"{paper['ram_bytes']:,} B", f"≤ {goals['ram_bytes']:,} B",
                     _status(h["goals_met"]["ram"])])
        parts.append(_table(["int8 student", "measured", f"board budget ({board['name']})",
                             paper["model"], "project goal", "status"], rows, num={1, 2, 3, 4}))
    parts.append("</section>")
    return "".join(parts)


def _stages_html(stages: dict) -> str:
    def flat(counts: dict, prefix: str = "") -> list[tuple[str, object]]:
        out = []
        for k, v in counts.items():
            if isinstance(v, dict):
                out += flat(v, f"{prefix}{k}: ")
            else:
                out.append((f"{prefix}{k}", v))
        return out

    rows = []
    for name, st in stages.items():
        counts = flat(st.get("counts") or {})
        inner = (_table([k for k, _ in counts], [[_e(_fmt(v)) for _, v in counts]],
                        num=set(range(len(counts))), cls="counts", wrap_header=True) if counts else "")
        rows.append([_e(name), _e(_duration(st.get("seconds"))), inner])
    return _table(["stage", "time", "counts"], rows, num={1})


def _auprc_table_html(evaluation: dict) -> str:
    rows, classes = [], []
    for label, entry in (evaluation.get("models") or {}).items():
        for clf in ("mil", "logreg"):
            for split in ("test", "validate"):
                m = (entry.get(clf) or {}).get(split)
                if not m:
                    continue
                rows.append([_e(label), _e(_fmt(entry.get("emb_dim"))), _e(clf), _e(split),
                             _e(_fmt(m.get("micro_auprc"))), _e(_fmt(m.get("macro_auprc"))),
                             _e(_fmt(m.get("micro_f1"))), _e(_fmt(m.get("n_clips")))])
                classes.append("key" if (clf, split) == ("mil", "test") else "")
    if not rows:
        return ""
    return _table(["model", "dim", "classifier", "split", "micro-AUPRC", "macro-AUPRC", "micro-F1",
                   "clips"], rows, num={1, 4, 5, 6, 7}, row_classes=classes)


def _dead_letters_html(records: list[dict]) -> str:
    shown = records[:REPORT.dead_letter_rows]
    cols = []
    for r in shown:
        cols += [k for k in r if k not in cols]
    rows = []
    for r in shown:
        row = []
        for k in cols:
            v = r.get(k)
            text = v if isinstance(v, str) else json.dumps(v, default=str)
            n = REPORT.dead_letter_cell_chars
            short = text if len(text) <= n else text[:n] + " …"
            row.append(f"<code>{_e(short)}</code>" if k == "uri" else _e(short))
        rows.append(row)
    more = (f"<p class=note>The first {len(shown):,} of {len(records):,}; all are in report.json "
            f"(<code>embed.dead_letters</code>).</p>" if len(records) > len(shown) else "")
    return _table(cols, rows) + more


_POSTER_EXPERIMENTS = (
    ("data_experiment", "data-experiment", "Less training data (sea experiment data)",
     "student micro-AUPRC (mean ± std over seeds)"),
    ("convergence_experiment", "convergence-experiment", "Faster convergence (sea experiment convergence)",
     "baseline epochs / SEA epochs to 95 % of the val-loss improvement"),
    ("specialisation_experiment", "specialisation-experiment",
     "Specialisation (sea experiment specialisation)", "student AUPRC / teacher AUPRC (mean ± std)"),
)


def render_html(report: dict, targets: DeployTargets = DEPLOY_TARGETS) -> str:
    """The whole page as one string (see the module docstring)."""
    h = headline(report, targets)
    evaluation = report.get("evaluation") or {}
    sections: list[tuple[str, str, str]] = []  # (id, title, body)

    fig = budget_plot(report.get("deploy") or {}, targets)
    if fig is not None:
        notes = (report.get("deploy") or {}).get("notes") or []
        sections.append(("memory", "Flash and RAM of the int8 student",
                         _img("Flash and RAM against the board budget, the paper and the goals", fig) +
                         ("<ul class=note>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"
                          if notes else "")))
    quality = ""
    fig, split = per_class_plot(evaluation)
    if fig is not None:
        quality += (f"<h3>Per-class AUPRC ({_e(split)} split): which classes the int8 student loses</h3>"
                    + _img("Per-class AUPRC of teacher, float and int8 student", fig))
    table = _auprc_table_html(evaluation)
    if table:
        params = evaluation.get("params") or {}
        clips = evaluation.get("clips") or {}
        quality += ("<h3>AUPRC table</h3>" + table +
                    f"<p class=note>Clips: {_e(', '.join(f'{k} {v}' for k, v in clips.items()))}; "
                    f"hop {_e(params.get('hop_seconds'))} s, classifier epochs "
                    f"{_e(params.get('epochs'))}. Bold rows: the MIL classifier on test "
                    f"(the headline figures).</p>")
    if quality:
        sections.append(("quality", "Downstream quality", quality))

    comp = report.get("sampling_comparison") or {}
    fig = mean_std_plot(comp.get("table"), xlabel="held-out R² (mean ± std over seeds)",
                        title=comp.get("metric", ""))
    if fig is not None:
        sections.append(("sampling-comparison",
                         "Sampling comparison (quick: each method's PCA judged on all windows, no student)",
                         _img("Sampling comparison", fig)))
    exp = report.get("sampling_experiment") or {}
    fig = mean_std_plot(exp.get("table"), xlabel="student micro-AUPRC, test (mean ± std over seeds)",
                        title=exp.get("metric", ""))
    if fig is not None:
        rows = [[_e(r["method"]), _e(f"{_fmt(r.get('mean'))} ± {_fmt(r.get('std'))}"),
                 _e(f"{_fmt(r.get('validate_mean'))} ± {_fmt(r.get('validate_std'))}"),
                 _e(_fmt(r.get("explained_variance_mean"))), _e(_fmt(r.get("n_seeds")))]
                for r in exp.get("table") or []]
        sections.append(("sampling-experiment", "Sampling experiment (sea experiment sampling)",
                         _img("Sampling experiment", fig) + "<h3>Sampling experiment table</h3>" +
                         _table(["sampling", "micro-AUPRC test (mean ± std)", "validate (mean ± std)",
                                 "PCA variance kept", "seeds"], rows, num={1, 2, 3, 4})))
    st = report.get("students_experiment") or {}
    fig = students_plot(st.get("rows"))
    if fig is not None:
        rows = [[_e(r["model"]), _e(_fmt(r.get("emb_dim"))), _e(_fmt(r.get("params"))),
                 _e(_fmt(r.get("size_mb"), 2)), _e(_fmt(r.get("act_mem_mb"), 2)),
                 _e(_fmt(r.get("micro_auprc_test"))), _e(_fmt(r.get("micro_auprc_validate")))]
                for r in st.get("rows") or []]
        sections.append(("students-experiment", "Students experiment (sea experiment students)",
                         _img("Students experiment", fig) + "<h3>Students table</h3>" +
                         _table(["model", "emb. dim", "params", "size (MB)", "act. mem. (MB)",
                                 "micro-AUPRC test", "validate"], rows, num={1, 2, 3, 4, 5, 6}) +
                         f"<p class=note>{_e(st.get('metric', ''))}</p>"))
    for key, sid, title, xlabel in _POSTER_EXPERIMENTS:  # issue 18: the poster's claims
        exp = report.get(key) or {}
        if exp.get("html_table"):
            fig = mean_std_plot(exp.get("table"), xlabel=xlabel, title=exp.get("metric", ""))
            vals = [r["mean"] + (r.get("std") or 0) for r in exp.get("table") or [] if is_num(r.get("mean"))]
            if fig is not None and vals and max(vals) > 1:  # ratios may exceed 1
                fig.axes[0].set_xlim(0.0, 1.1 * max(vals))
            t = exp["html_table"]
            sections.append((sid, title, (_img(title, fig) if fig is not None else "") +
                             _table(t["columns"], [[_e(c) for c in r] for r in t["rows"]],
                                    num=set(range(1, len(t["columns"])))) +
                             f"<p class=note>{_e(exp.get('metric', ''))}</p>"))
    fig = training_plot((report.get("train") or {}).get("history"))
    if fig is not None:
        sections.append(("training", "Student training", _img("Training curves", fig)))
    if report.get("stages"):
        sections.append(("stages", "Stages", _stages_html(report["stages"])))
    dead = (report.get("embed") or {}).get("dead_letters") or []
    if dead:
        sections.append(("dead-letters", f"Dead-lettered inputs ({len(dead)})", _dead_letters_html(dead)))

    parts = ["<!doctype html><html lang=en><head><meta charset='utf-8'>",
             "<meta name=viewport content='width=device-width, initial-scale=1'>",
             "<title>sea run report</title>", f"<style>{_CSS}</style></head><body>",
             _headline_html(h)]
    if sections:
        parts.append("<nav>Sections: " + " · ".join(f"<a href='#{i}'>{_e(t.split(' (')[0])}</a>"
                                                     for i, t, _ in sections) + "</nav>")
    for sid, title, body in sections:
        parts.append(f"<section id='{sid}'><h2>{_e(title)}</h2>{body}</section>")
    parts.append("<section id=raw><h2>report.json</h2><details><summary>show the whole report.json"
                 "</summary><pre>"
                 f"{html.escape(json.dumps(report, indent=2, default=str))}</pre></details></section>")
    parts.append("</body></html>")
    return "\n".join(parts)
