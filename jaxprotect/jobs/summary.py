"""``OUT/summary.json`` and ``OUT/summary.md``: every photo of the job, done (with the held-out
model's verdict where the method has one), failed (with the reason) or left, and the counts.

Written by process 0 at the end of every run, interrupted or not, from the manifest with every
status file merged in."""
from __future__ import annotations

import datetime
from pathlib import Path

from jaxprotect.io.naming import write_json

__all__ = ["summarise", "write_summary", "counts_line"]

_MD_ROWS = 200  # per section in the Markdown; the JSON lists every photo


def summarise(manifest: dict, *, run: int, state: str) -> dict:
    """The summary dict of ``manifest`` after run ``run`` ended in ``state`` ("complete",
    "interrupted" or "failed")."""
    photos = []
    counts = {"done": 0, "failed": 0, "left": 0}
    for p in manifest["photos"]:
        status = {"done": "done", "failed": "failed"}.get(p["status"], "left")
        counts[status] += 1
        item = {"input": p["name"], "stem": p["stem"], "status": status, "in_last_run": p.get("run") == run}
        if status == "failed":
            item.update(reason=p.get("reason"), error_type=p.get("error_type"))
        if status == "done":
            item.update(outputs=p.get("outputs"), verdict=p.get("verdict"))
        photos.append(item)
    return {"method": manifest["method"], "run": run, "state": state, "counts": counts, "total": len(photos),
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "photos": photos}


def counts_line(summary: dict) -> str:
    """"N photos: a done, b failed, c left" (plus the run's state when not complete)."""
    c = summary["counts"]
    line = f"{summary['total']} photos: {c['done']} done, {c['failed']} failed, {c['left']} left"
    return line if summary["state"] == "complete" else f"{line} ({summary['state']})"


def _verdict(v) -> str:
    if not v:
        return ""
    return str(v.get("decision") or v)


def _markdown(summary: dict) -> str:
    lines = [f"# Protection job: {summary['method']}", "",
             f"Run {summary['run']} ({summary['state']}), {summary['written']}: {counts_line(summary)}.", ""]
    sections = (("done", "Done", ("photo", "outputs", "held-out verdict")),
                ("failed", "Failed", ("photo", "reason", "")),
                ("left", "Left (run the same command again to continue)", ("photo", "", "")))
    for status, title, cols in sections:
        rows = [p for p in summary["photos"] if p["status"] == status]
        if not rows:
            continue
        lines += [f"## {title}: {len(rows)}", ""]
        head = [c for c in cols if c]
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for p in rows[:_MD_ROWS]:
            if status == "done":
                photo = (p.get("outputs") or {}).get("photo", "")
                cells = [p["input"], Path(photo).name if photo else "", _verdict(p.get("verdict")) or "-"]
            elif status == "failed":
                cells = [p["input"], f"[{p.get('error_type')}] {p.get('reason')}"]
            else:
                cells = [p["input"]]
            lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
        if len(rows) > _MD_ROWS:
            lines.append(f"\n... and {len(rows) - _MD_ROWS} more (summary.json lists every photo).")
        lines.append("")
    return "\n".join(lines)


def write_summary(out_dir, summary: dict) -> tuple[Path, Path]:
    """Write ``OUT/summary.json`` and ``OUT/summary.md`` atomically; returns their paths."""
    import os
    import tempfile

    out = Path(out_dir)
    js = write_json(out / "summary.json", summary)
    md = out / "summary.md"
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".summary.md.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(_markdown(summary))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, md)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return js, md
