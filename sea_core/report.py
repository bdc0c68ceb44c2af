"""``report.html`` from ``report.json``: the page a person reads after ``sea run``.

Top to bottom: a headline block (the student that was built, its int8 flash and RAM
against the board budget, the paper's 8-bit Student 2 and the project's goals, test
micro-AUPRC of teacher / float / int8 student, wall time, dead letters and a verdict
line), then flash/RAM, downstream quality (per-class figure, AUPRC table), sampling,
experiments, training, stages, dead letters and the raw ``report.json`` (collapsed).
A section whose data the run does not have is left out.

The page is one self-contained file: figures are PNGs embedded as data URIs, there is
no script and no external reference. It is written atomically (temporary file +
``os.replace``; one whole-object write on an object store).
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path

from sea_core.params import QUANT as DEPLOY_TARGETS, REPORT, STUDENT_MEL64, QuantParams as DeployTargets

__all__ = ["headline", "render_html", "write_report"]

_DPI = 110
_COLORS = {"teacher": "#4c72b0", "student": "#dd8452", "int8": "#55a868"}
_REF_STYLE = {"board": dict(color="#c44e52", linestyle="-", linewidth=3),
              "paper": dict(color="#8172b3", linestyle="-", linewidth=3),
              "goal": dict(color="#2ca02c", linestyle="-", linewidth=3)}


# --------------------------------------------------------------------------- facts
def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _student_window_seconds(report: dict) -> tuple[float | None, str]:
    """The student's window in seconds and where it came from.

    ``window_seconds`` recorded in report.json wins (top level, ``student``, ``deploy``,
    ``deploy.student`` or ``dataset_card``; a dict form uses its ``student`` entry);
    otherwise it is derived from the student's window in samples.
    """
    dep = report.get("deploy") or {}
    card = report.get("dataset_card") or {}
    for holder in (report, report.get("student") or {}, dep, dep.get("student") or {}, card):
        for key in ("window_seconds", "student_window_seconds"):
            v = holder.get(key)
            if isinstance(v, dict):
                v = v.get("student")
            if _is_num(v):
                return float(v), "report.json"
    rate = card.get("student_sample_rate") or STUDENT_MEL64.sample_rate
    for samples in ((dep.get("student") or {}).get("window_samples"), dep.get("window_samples"),
                    card.get("student_samples")):
        if _is_num(samples) and samples > 0:
            return samples / rate, f"{samples:,} samples at {rate:,} Hz"
    return None, ""


def _micro(entry: dict) -> tuple[float | None, str | None]:
    """MIL micro-AUPRC of one evaluated model: test split, else validate."""
    mil = (entry or {}).get("mil") or {}
    for split in ("test", "validate"):
        v = (mil.get(split) or {}).get("micro_auprc")
        if _is_num(v):
            return float(v), split
    return None, None


def _model_keys(evaluation: dict) -> dict[str, str]:
    """role (teacher / student / int8) -> the evaluation's model label."""
    keys = {}
    for label in (evaluation.get("models") or {}):
        role = ("teacher" if label.startswith("teacher") else "int8" if label.startswith("int8")
                else "student" if label.startswith("student") else None)
        if role and role not in keys:
            keys[role] = label
    return keys


def headline(report: dict, targets: DeployTargets = DEPLOY_TARGETS) -> dict:
    """The figures of the headline block, derived from ``report`` (``None`` where missing)."""
    cfg = report.get("config") or {}
    dep = report.get("deploy") or {}
    board = dep.get("board") or {}
    tspec = cfg.get("teacher_spec") or {}
    window, window_source = _student_window_seconds(report)
    teacher_window = (tspec["window_samples"] / tspec["sample_rate"]
                      if _is_num(tspec.get("window_samples")) and tspec.get("sample_rate") else None)
    shape = (dep.get("input") or {}).get("shape") or []
    emb_dim = (dep.get("student") or {}).get("emb_dim") or cfg.get("emb_dim")
    flash, ram = dep.get("flash_bytes"), dep.get("ram_bytes")
    arena = (dep.get("ram") or {}).get("arena_bytes")
    out = {
        "student": {"emb_dim": emb_dim, "window_seconds": window, "window_source": window_source,
                    "head": (dep.get("student") or {}).get("head") or cfg.get("head"),
                    "input": f"{shape[1]} × {shape[2]} log-mel" if len(shape) == 4 else None,
                    "teacher": cfg.get("teacher"), "teacher_window_seconds": teacher_window,
                    "epochs": ((report.get("train") or {}).get("epochs_run")),
                    "deploy_mode": dep.get("mode")},
        "board": {"name": board.get("name"), "flash_bytes": board.get("flash_bytes"),
                  "ram_bytes": board.get("ram_bytes")},
        "memory": {"flash_bytes": flash, "ram_bytes": ram, "arena_bytes": arena},
        "paper": {"model": targets.paper_model, "flash_bytes": targets.paper_flash_bytes,
                  "ram_bytes": targets.paper_ram_bytes},
        "goals": {"flash_bytes": targets.flash_goal_bytes, "arena_bytes": targets.arena_goal_bytes,
                  "ram_bytes": targets.ram_goal_bytes},
    }
    fits_board = None
    if _is_num(flash) and _is_num(ram) and board.get("flash_bytes") and board.get("ram_bytes"):
        fits_board = flash <= board["flash_bytes"] and ram <= board["ram_bytes"]
    goals_met = {"flash": flash <= targets.flash_goal_bytes if _is_num(flash) else None,
                 "arena": arena <= targets.arena_goal_bytes if _is_num(arena) else None,
                 "ram": ram <= targets.ram_goal_bytes if _is_num(ram) else None}
    out["fits_board"], out["goals_met"] = fits_board, goals_met

    evaluation = report.get("evaluation") or {}
    keys = _model_keys(evaluation)
    auprc, splits = {}, set()
    for role in ("teacher", "student", "int8"):
        v, split = _micro((evaluation.get("models") or {}).get(keys.get(role, ""), {}))
        auprc[role] = v
        if split:
            splits.add(split)
    ratio = (auprc["int8"] / auprc["teacher"]
             if auprc["int8"] is not None and auprc["teacher"] else None)
    out["auprc"] = {**auprc, "int8_over_teacher": ratio, "labels": keys,
                    "split": "/".join(sorted(splits, reverse=True)) or None}

    emb = report.get("embed") or {}
    counts = emb.get("counts") or {}
    out["dead_letters"] = {"count": counts.get("dead_lettered", len(emb.get("dead_letters") or [])),
                           "inputs": counts.get("inputs"), "listed": len(emb.get("dead_letters") or [])}
    out["wall_seconds"] = report.get("wall_seconds")
    out["this_invocation_seconds"] = report.get("this_invocation_seconds")
    out["problems"] = list(report.get("consistency_problems") or [])
    out["stages"] = list(report.get("stages") or {})
    out["checked"] = "consistency_problems" in report
    out["verdict"], out["verdict_class"] = _verdict(out)
    return out


def _verdict(h: dict) -> tuple[str, str]:
    board, mem, goals = h["board"], h["memory"], h["goals"]
    if h["fits_board"] is None:
        return "No int8 student was measured in this run: nothing to fit on a board.", "bad"
    name = board["name"] or "the board"
    if not h["fits_board"]:
        why = [f"{what} {mem[k]:,} B > {board[k]:,} B" for what, k in (("flash", "flash_bytes"),
                                                                       ("RAM", "ram_bytes"))
               if mem[k] > board[k]]
        return f"DOES NOT FIT {name}: {'; '.join(why)}.", "bad"
    text = (f"FITS {name}: flash {mem['flash_bytes']:,} B of {board['flash_bytes']:,} B, "
            f"RAM {mem['ram_bytes']:,} B of {board['ram_bytes']:,} B.")
    missed = [f"{what} {mem[k]:,} B > {goals[g]:,} B" for what, k, g, met in (
        ("flash", "flash_bytes", "flash_bytes", h["goals_met"]["flash"]),
        ("TFLM arena", "arena_bytes", "arena_bytes", h["goals_met"]["arena"]),
        ("total RAM", "ram_bytes", "ram_bytes", h["goals_met"]["ram"])) if met is False]
    if missed:
        plural = "s" if len(missed) > 1 else ""
        return text + f" Misses the project's goal{plural}: {'; '.join(missed)}.", "warn"
    return text + " Meets every project goal (flash, TFLM arena, total RAM).", "ok"


# --------------------------------------------------------------------------- figures
def _figure(**kw):
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kw)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return base64.b64encode(buf.getvalue()).decode()


def _budget_plot(dep: dict, targets: DeployTargets):
    """Flash and RAM of the int8 student against the board, the paper and the goals.

    Left: the whole board budget (linear). Right: the same bars zoomed to the paper's
    figures and the goals. Each reference is a short vertical mark on the bar it applies to.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    board = dep.get("board") or {}
    flash, ram = dep.get("flash_bytes"), dep.get("ram_bytes")
    if not (_is_num(flash) and _is_num(ram) and board.get("flash_bytes")):
        return None
    arena = (dep.get("ram") or {}).get("arena_bytes")
    # (label, value, {reference kind: bytes})
    rows = [("flash", flash, {"board": board.get("flash_bytes"), "paper": targets.paper_flash_bytes,
                              "goal": targets.flash_goal_bytes}),
            ("total RAM", ram, {"board": board.get("ram_bytes"), "paper": targets.paper_ram_bytes,
                                "goal": targets.ram_goal_bytes})]
    if _is_num(arena):
        rows.append(("TFLM arena", arena, {"goal": targets.arena_goal_bytes}))
    rows = rows[::-1]  # first row on top
    fig = _figure(figsize=(9.2, 1.2 + 0.8 * len(rows)))
    axes = fig.subplots(1, 2, sharey=True)
    zoom = 1.3 * max([v for _, v, _ in rows] + [r for _, _, refs in rows
                                                  for k, r in refs.items() if k != "board" and r])
    full = 1.06 * max([v for _, v, _ in rows] + [refs.get("board") or 0 for _, _, refs in rows])
    for ax, xmax, title in ((axes[0], full, f"against the board ({board.get('name', 'board')})"),
                            (axes[1], zoom, "zoomed: against the paper and the project goals")):
        for y, (label, value, refs) in enumerate(rows):
            ax.barh(y, value / 1e3, height=0.5, color="#4c72b0")
            for kind, ref in refs.items():
                if ref and ref <= xmax:  # board: whole bar; paper: upper half; goal: lower half
                    lo, hi = {"board": (-0.44, 0.44), "paper": (0.03, 0.44),
                              "goal": (-0.44, -0.03)}[kind]
                    ax.vlines(ref / 1e3, y + lo, y + hi, **_REF_STYLE[kind])
        ax.set_xlim(0, xmax / 1e3)
        ax.set_ylim(-0.6, len(rows) - 0.25)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("kB (1 kB = 1,000 B)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(rows)), [f"{label}\n{value:,} B" for label, value, _ in rows])
    handles = [Patch(color="#4c72b0", label="int8 student (measured)"),
               Line2D([], [], label=f"board budget ({board.get('name', '')}): full-height mark",
                      **_REF_STYLE["board"]),
               Line2D([], [], label=f"{targets.paper_model}: {targets.paper_flash_bytes / 1e6:g} MB "
                                    f"flash / {targets.paper_ram_bytes / 1e6:g} MB RAM: upper mark",
                      **_REF_STYLE["paper"]),
               Line2D([], [], label="project goal: lower mark", **_REF_STYLE["goal"])]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def _per_class_plot(evaluation: dict):
    """Per-class test AUPRC (MIL) of teacher, float and int8 student; delta int8 - teacher."""
    keys = _model_keys(evaluation)
    models = evaluation.get("models") or {}
    classes = list(evaluation.get("classes") or [])
    if "teacher" not in keys or not classes:
        return None, None

    def per_class(role):
        mil = (models.get(keys.get(role, "")) or {}).get("mil") or {}
        for split in ("test", "validate"):
            if (mil.get(split) or {}).get("per_class_auprc"):
                return mil[split]["per_class_auprc"], split
        return None, None

    series = [(role, *per_class(role)) for role in ("teacher", "student", "int8") if role in keys]
    series = [s for s in series if s[1]]
    if len(series) < 2:
        return None, None
    split = series[0][2]
    fig = _figure(figsize=(9.2, 1.2 + 0.42 * len(classes)))
    ax = fig.subplots()
    height = 0.8 / len(series)
    order = classes[::-1]  # first class on top
    names = {"teacher": f"teacher ({keys['teacher'].partition(':')[2] or keys['teacher']})",
             "student": "float student", "int8": "int8 student"}
    for i, (role, values, _) in enumerate(series):
        ys = [y + (len(series) - 1 - i - (len(series) - 1) / 2) * height for y in range(len(order))]
        vals = [values.get(c) for c in order]
        ax.barh(ys, [v if v is not None else 0 for v in vals], height=height * 0.95,
                color=_COLORS[role], label=names[role])
    teacher = series[0][1]
    int8 = next((s[1] for s in series if s[0] == "int8"), None)
    for y, c in enumerate(order):
        t, q = teacher.get(c), (int8 or {}).get(c)
        if t is None:
            ax.text(0.01, y, "no positive clips in this split", va="center", fontsize=8, color="#666")
        elif q is not None:
            d = q - t
            ax.text(1.02, y, f"{d:+.2f}", va="center", fontsize=8,
                    color="#c44e52" if d < -0.05 else "#333", fontweight="bold" if d < -0.05 else None)
    ax.set_yticks(range(len(order)), order, fontsize=8)
    ax.set_xlim(0, 1.12)
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel(f"AUPRC ({split} split, MIL classifier); right: int8 − teacher", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(labelsize=8)
    fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return fig, split


def _mean_std_plot(table: list[dict], *, xlabel: str, title: str, value_key="mean", std_key="std"):
    """Horizontal bars of mean ± std (error bars), one per method."""
    rows = [r for r in table or [] if _is_num(r.get(value_key))]
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: r[value_key])
    fig = _figure(figsize=(9.2, 1.1 + 0.45 * len(rows)))
    ax = fig.subplots()
    means = [r[value_key] for r in rows]
    stds = [r.get(std_key) if _is_num(r.get(std_key)) else 0.0 for r in rows]
    # points with error bars, not bars: the axis is zoomed to the spread, so bar lengths would mislead
    ax.errorbar(means, range(len(rows)), xerr=stds, fmt="o", markersize=7, capsize=6, color="#4c72b0",
                ecolor="#222", elinewidth=1.5)
    lo = min(m - s for m, s in zip(means, stds))
    hi = max(m + s for m, s in zip(means, stds))
    pad = max(0.01, 0.25 * (hi - lo))
    ax.set_xlim(max(0.0, lo - pad), min(1.0, hi + pad))
    ax.set_yticks(range(len(rows)), [f"{r['method']}\n{m:.3f} ± {s:.3f}"
                                     for r, m, s in zip(rows, means, stds)], fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title.replace("R^2", "R²"), fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    return fig


def _students_plot(rows: list[dict]):
    rows = [r for r in rows or [] if _is_num(r.get("micro_auprc_test"))]
    if not rows:
        return None
    fig = _figure(figsize=(9.2, 1.1 + 0.45 * len(rows)))
    ax = fig.subplots()
    order = rows[::-1]
    ax.barh(range(len(order)), [r["micro_auprc_test"] for r in order], height=0.6,
            color=["#4c72b0" if "teacher" in r["model"] else "#dd8452" for r in order])
    for y, r in enumerate(order):
        ax.text(r["micro_auprc_test"], y, f"  {r['micro_auprc_test']:.3f}   ({r['emb_dim']}-d, "
                f"{r['size_mb']:.2f} MB, act. {r['act_mem_mb']:.2f} MB)", va="center", fontsize=8)
    ax.set_yticks(range(len(order)), [r["model"] for r in order], fontsize=8)
    ax.set_xlim(0, 1.45)
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel("downstream micro-AUPRC (test split; one seed per model, so no error bars)",
                  fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _training_plot(history: list[dict]):
    points = [h for h in history or [] if _is_num(h.get("epoch"))]
    if not points:
        return None
    fig = _figure(figsize=(9.2, 3.0))
    ax = fig.subplots()
    epochs = [h["epoch"] for h in points]
    for key, label in (("loss", "train MSE"), ("val_loss", "validate MSE")):
        vals = [h.get(key) for h in points]
        if any(_is_num(v) for v in vals):
            ax.plot(epochs, vals, marker="o", label=label)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("MSE to PCA targets", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if len(epochs) == 1:
        ax.set_xticks(epochs)
    losses = [h.get(k) for h in points for k in ("loss", "val_loss") if _is_num(h.get(k))]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 100:
        ax.set_yscale("log")
        ax.set_ylabel("MSE to PCA targets (log)", fontsize=8)
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


# --------------------------------------------------------------------------- HTML pieces
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
    if not _is_num(seconds):
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
    return f"<img alt='{_e(title)}' src='data:image/png;base64,{_png(fig)}'>"


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
    if _is_num(h["wall_seconds"]):
        inv = (f"; this invocation {_duration(h['this_invocation_seconds'])}"
               if _is_num(h["this_invocation_seconds"]) else "")
        facts.append(f"<li><b>Wall time:</b> {_duration(h['wall_seconds'])} (sum of the stages{inv}).</li>")
    dl = h["dead_letters"]
    if dl["inputs"] is not None or dl["count"]:
        of = f" of {dl['inputs']:,} inputs" if dl["inputs"] is not None else ""
        link = " (<a href='#dead-letters'>list</a>)" if dl["listed"] else ""
        facts.append(f"<li><b>Dead-lettered inputs:</b> {dl['count']:,}{of}{link}.</li>")
    parts.append("<ul>" + "".join(facts) + "</ul>")
    if _is_num(mem["flash_bytes"]):
        def pct(v, of):
            return f" ({100 * v / of:.0f} % used)" if _is_num(v) and of else ""

        rows = [["Flash", f"{mem['flash_bytes']:,} B",
                 f"{_fmt(board['flash_bytes'])} B{pct(mem['flash_bytes'], board['flash_bytes'])}",
                 f"{paper['flash_bytes']:,} B", f"≤ {goals['flash_bytes']:,} B",
                 _status(h["goals_met"]["flash"])]]
        if _is_num(mem["arena_bytes"]):
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


# --------------------------------------------------------------------------- page
def render_html(report: dict, targets: DeployTargets = DEPLOY_TARGETS) -> str:
    """The whole page as one string (see the module docstring)."""
    h = headline(report, targets)
    evaluation = report.get("evaluation") or {}
    sections: list[tuple[str, str, str]] = []  # (id, title, body)

    fig = _budget_plot(report.get("deploy") or {}, targets)
    if fig is not None:
        notes = (report.get("deploy") or {}).get("notes") or []
        sections.append(("memory", "Flash and RAM of the int8 student",
                         _img("Flash and RAM against the board budget, the paper and the goals", fig) +
                         ("<ul class=note>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"
                          if notes else "")))
    quality = ""
    fig, split = _per_class_plot(evaluation)
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
    fig = _mean_std_plot(comp.get("table"), xlabel="held-out R² (mean ± std over seeds)",
                         title=comp.get("metric", ""))
    if fig is not None:
        sections.append(("sampling-comparison",
                         "Sampling comparison (quick: each method's PCA judged on all windows, no student)",
                         _img("Sampling comparison", fig)))
    exp = report.get("sampling_experiment") or {}
    fig = _mean_std_plot(exp.get("table"), xlabel="student micro-AUPRC, test (mean ± std over seeds)",
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
    fig = _students_plot(st.get("rows"))
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
            fig = _mean_std_plot(exp.get("table"), xlabel=xlabel, title=exp.get("metric", ""))
            vals = [r["mean"] + (r.get("std") or 0) for r in exp.get("table") or [] if _is_num(r.get("mean"))]
            if fig is not None and vals and max(vals) > 1:  # ratios may exceed 1
                fig.axes[0].set_xlim(0.0, 1.1 * max(vals))
            t = exp["html_table"]
            sections.append((sid, title, (_img(title, fig) if fig is not None else "") +
                             _table(t["columns"], [[_e(c) for c in r] for r in t["rows"]],
                                    num=set(range(1, len(t["columns"])))) +
                             f"<p class=note>{_e(exp.get('metric', ''))}</p>"))
    fig = _training_plot((report.get("train") or {}).get("history"))
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


# --------------------------------------------------------------------------- files
def _write_atomic(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` so a reader never sees a half-written file."""
    if "://" in path:
        import fsspec

        fs, p = fsspec.core.url_to_fs(path)
        fs.pipe_file(p, text.encode("utf-8"))  # one whole-object write
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_report(report: dict, out_dir: str | Path) -> tuple[Path | str, Path | str]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (local path or fsspec URL)."""
    out = str(out_dir)
    remote = "://" in out
    if not remote:
        Path(out).mkdir(parents=True, exist_ok=True)
    json_path = f"{out.rstrip('/')}/report.json"
    html_path = f"{out.rstrip('/')}/report.html"
    page = render_html(report)  # before writing anything: a failed render leaves both files as they were
    _write_atomic(json_path, json.dumps(report, indent=2, default=str))
    _write_atomic(html_path, page)
    return (json_path, html_path) if remote else (Path(json_path), Path(html_path))
