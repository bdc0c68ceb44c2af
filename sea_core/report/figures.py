"""The report's matplotlib figures (flash/RAM budget, per-class AUPRC, mean ± std tables,
students, training curves) and their PNG encoding for a data URI."""
from __future__ import annotations

import base64
import io

from sea_core.params import DeployTargets
from sea_core.report.facts import is_num, model_keys

__all__ = ["png", "budget_plot", "per_class_plot", "mean_std_plot", "students_plot", "training_plot"]

_DPI = 110
_COLORS = {"teacher": "#4c72b0", "student": "#dd8452", "int8": "#55a868"}
_REF_STYLE = {"board": dict(color="#c44e52", linestyle="-", linewidth=3),
              "paper": dict(color="#8172b3", linestyle="-", linewidth=3),
              "goal": dict(color="#2ca02c", linestyle="-", linewidth=3)}


def _figure(**kw):
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kw)


def png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return base64.b64encode(buf.getvalue()).decode()


def budget_plot(dep: dict, targets: DeployTargets):
    """Flash and RAM of the int8 student against the board, the paper and the goals.

    Left: the whole board budget (linear). Right: the same bars zoomed to the paper's
    figures and the goals. Each reference is a short vertical mark on the bar it applies to.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    board = dep.get("board") or {}
    flash, ram = dep.get("flash_bytes"), dep.get("ram_bytes")
    if not (is_num(flash) and is_num(ram) and board.get("flash_bytes")):
        return None
    arena = (dep.get("ram") or {}).get("arena_bytes")
    # (label, value, {reference kind: bytes})
    rows = [("flash", flash, {"board": board.get("flash_bytes"), "paper": targets.paper_flash_bytes,
                              "goal": targets.flash_goal_bytes}),
            ("total RAM", ram, {"board": board.get("ram_bytes"), "paper": targets.paper_ram_bytes,
                                "goal": targets.ram_goal_bytes})]
    if is_num(arena):
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


def per_class_plot(evaluation: dict):
    """Per-class test AUPRC (MIL) of teacher, float and int8 student; delta int8 - teacher."""
    keys = model_keys(evaluation)
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


def mean_std_plot(table: list[dict], *, xlabel: str, title: str, value_key="mean", std_key="std"):
    """Horizontal bars of mean ± std (error bars), one per method."""
    rows = [r for r in table or [] if is_num(r.get(value_key))]
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: r[value_key])
    fig = _figure(figsize=(9.2, 1.1 + 0.45 * len(rows)))
    ax = fig.subplots()
    means = [r[value_key] for r in rows]
    stds = [r.get(std_key) if is_num(r.get(std_key)) else 0.0 for r in rows]
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


def students_plot(rows: list[dict]):
    rows = [r for r in rows or [] if is_num(r.get("micro_auprc_test"))]
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


def training_plot(history: list[dict]):
    points = [h for h in history or [] if is_num(h.get("epoch"))]
    if not points:
        return None
    fig = _figure(figsize=(9.2, 3.0))
    ax = fig.subplots()
    epochs = [h["epoch"] for h in points]
    for key, label in (("loss", "train MSE"), ("val_loss", "validate MSE")):
        vals = [h.get(key) for h in points]
        if any(is_num(v) for v in vals):
            ax.plot(epochs, vals, marker="o", label=label)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("MSE to PCA targets", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if len(epochs) == 1:
        ax.set_xticks(epochs)
    losses = [h.get(k) for h in points for k in ("loss", "val_loss") if is_num(h.get(k))]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 100:
        ax.set_yscale("log")
        ax.set_ylabel("MSE to PCA targets (log)", fontsize=8)
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig
