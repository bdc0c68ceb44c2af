"""``report.html`` from ``report.json``: self-contained HTML with matplotlib plots.

Plots (PNG, embedded as base64 so the file can be mailed or archived alone):
AUPRC by model, sampling comparison (when the experiment ran), flash/RAM vs
the board budget, training curves.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

__all__ = ["render_html", "write_report"]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _auprc_plot(evaluation: dict):
    import matplotlib.pyplot as plt

    models = list(evaluation.get("models", {}))
    if not models:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.2
    series = [("mil", "test"), ("mil", "validate"), ("logreg", "test"), ("logreg", "validate")]
    for i, (clf, split) in enumerate(series):
        vals = [evaluation["models"][m][clf].get(split, {}).get("micro_auprc") or 0 for m in models]
        ax.bar([j + (i - 1.5) * width for j in range(len(models))], vals, width,
               label=f"{clf} / {split}")
    ax.set_xticks(range(len(models)), models, rotation=10)
    ax.set_ylabel("micro-AUPRC")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    ax.set_title("Downstream micro-AUPRC by model")
    return fig


def _sampling_plot(sampling: dict, ylabel: str, title: str):
    import matplotlib.pyplot as plt

    rows = sampling.get("table") or []
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar([r["method"] for r in rows], [r["mean"] for r in rows],
           yerr=[r.get("std") or 0 for r in rows], capsize=4)
    ax.set_ylabel(ylabel + " (mean ± std over seeds)", fontsize=8)
    lo = min(r["mean"] - (r.get("std") or 0) for r in rows)
    hi = max(r["mean"] + (r.get("std") or 0) for r in rows)
    pad = max(0.01, 0.5 * (hi - lo))
    ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))
    ax.set_title(title, fontsize=9)
    return fig


def _budget_plot(deploy: dict):
    import matplotlib.pyplot as plt

    board = deploy.get("board") or {}
    if not board:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(7, 2.8))
    for ax, key, budget_key, title in ((axes[0], "flash_bytes", "flash_bytes", "Flash"),
                                       (axes[1], "ram_bytes", "ram_bytes", "RAM")):
        used = deploy.get(key) or 0
        budget = board.get(budget_key) or 0
        ax.bar(["used"], [used / 1024], color="tab:blue")
        ax.axhline(budget / 1024, color="tab:red", linestyle="--", label=f"budget {budget / 1024:.0f} KB")
        ax.set_ylabel("KB")
        ax.set_title(f"{title}: {used / 1024:.1f} KB")
        ax.legend(fontsize=7)
    fig.suptitle(f"int8 student vs {board.get('name', 'board')}", y=1.06)
    return fig


def _training_plot(history: list[dict]):
    import matplotlib.pyplot as plt

    if not history:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h.get("loss") for h in history], marker="o", label="train MSE")
    ax.plot(epochs, [h.get("val_loss") for h in history], marker="o", label="validate MSE")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE to PCA targets")
    ax.legend()
    ax.set_title("Student training")
    return fig


def render_html(report: dict) -> str:
    import matplotlib
    matplotlib.use("Agg")

    figures = [
        ("AUPRC by model", _auprc_plot(report.get("evaluation") or {})),
        ("Sampling comparison (quick: PCA variance kept on all windows, no student)",
         _sampling_plot(report.get("sampling_comparison") or {}, "held-out R²",
                        (report.get("sampling_comparison") or {}).get("metric", ""))),
        ("Sampling experiment (`sea experiment sampling`)",
         _sampling_plot(report.get("sampling_experiment") or {}, "student micro-AUPRC",
                        "Sampling method for the PCA fit -> student -> downstream")),
        ("Flash / RAM vs board budget", _budget_plot(report.get("deploy") or {})),
        ("Training curves", _training_plot((report.get("train") or {}).get("history") or [])),
    ]
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>sea run report</title>",
             "<style>body{font-family:sans-serif;max-width:960px;margin:auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>",
             "</head><body><h1>sea run report</h1>"]
    stages = report.get("stages") or {}
    if stages:
        parts.append("<h2>Stages</h2><table><tr><th>stage</th><th>seconds</th><th>counts</th></tr>")
        for name, st in stages.items():
            counts = html.escape(json.dumps(st.get("counts", {})))
            parts.append(f"<tr><td>{html.escape(name)}</td><td>{st.get('seconds', 0):.1f}</td>"
                         f"<td><code>{counts}</code></td></tr>")
        parts.append("</table>")
    for title, fig in figures:
        if fig is None:
            parts.append(f"<h2>{html.escape(title)}</h2><p>(not available in this run)</p>")
        else:
            parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
                         f"src='data:image/png;base64,{_png(fig)}'>")
    for title, table in (("AUPRC table", (report.get("evaluation") or {}).get("markdown")),
                         ("Sampling experiment table", (report.get("sampling_experiment") or {}).get("markdown")),
                         ("Students table", (report.get("students_experiment") or {}).get("markdown"))):
        if table:
            parts.append(f"<h2>{html.escape(title)}</h2><pre>{html.escape(table)}</pre>")
    parts.append("<h2>report.json</h2><details><pre>"
                 f"{html.escape(json.dumps(report, indent=2, default=str))}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(report))
    return json_path, html_path
