"""Write an evaluation's ``report.json``, ``report.md`` and PNG plots (atomically, into a folder).

The Markdown report holds the tables a reader needs (pairing, thresholds, dodging, impersonation,
identification, robustness, quality, set distances) at every FAR; the JSON holds everything,
per-pair scores and margins included. Plots need matplotlib (the ``experiments`` extra); without it
the report says they were skipped.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

__all__ = ["write_report", "render_markdown", "to_jsonable"]


def to_jsonable(obj):
    """Report dict -> JSON-safe values: tuple -> list, numpy -> Python, non-finite floats -> "inf"/"nan" strings."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else str(v)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fmt(v, digits=3):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.{digits}f}"
    return str(v)


def _far(f) -> str:
    return f"{float(f) * 100:.3g}%"


def _margin(m) -> str:
    if not m:
        return "–"
    return f"{m['q10']:+.3f} / {m['q50']:+.3f} / {m['q90']:+.3f}"


def _dodging_table(lines, title, judges, kind):
    rows = []
    for name, j in judges.items():
        table = j["dodging"][kind]
        if not table:
            continue
        for source, by_far in table.items():
            for far, r in by_far.items():
                thr = j["thresholds"][source][far]
                reached = "" if thr["far_reached"] is None else f" (reached {_far(thr['far_reached'])} of {thr['negatives']})"
                rows.append(f"| {name} | {source} | {_far(far)}{reached} | {_fmt(thr['threshold'], 4)} | {_fmt(r['psr'])} "
                            f"| {r['successes']}/{r['matched_before']} of {r['pairs']} | {r['no_face_after']} | {_margin(r['margin'])} |")
    if rows:
        lines += [f"### {title}", "", "| judge | thresholds | FAR | threshold | PSR | successes / matched before, of pairs "
                  "| no face after | margin q10 / median / q90 |", "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows, ""]


def render_markdown(report: dict) -> str:
    """The Markdown text of ``report.md``."""
    cfg, pairing, summary = report["config"], report["pairing"], report["summary"]
    lines = [f"# Protection evaluation: {report['protected_dir']}", ""]
    lines += [f"- originals: `{cfg['originals_dir']}`; targets: `{cfg['targets_dir']}`; gallery: `{cfg['gallery_dir']}`",
              f"- pairs evaluated: {pairing['pairs']}; unmatched protected files: {len(pairing['unmatched'])}; "
              f"skipped (side-by-side / original copies): {len(pairing['skipped'])}; originals without a protected "
              f"photo: {len(pairing['originals_without_protected'])}",
              f"- pairing rule: {pairing['rule']}",
              f"- identities: {report['identities']['count']} people among {report['identities']['photos']} unprotected "
              f"photos, by {', '.join(report['identities']['rules']) or '–'}",
              f"- time: {report['seconds']['wall']:.1f} s wall, {report['seconds']['cpu']:.1f} s CPU", ""]
    if report["identities"]["warning"]:
        lines += [f"**Warning:** {report['identities']['warning']}.", ""]
    for u in pairing["unmatched"]:
        lines.append(f"- unmatched: `{u['path']}` ({u['reason']})")
    for e in report["errors"]:
        lines.append(f"- unreadable: `{e['path']}`: {e['error']}")
    for s in report["judges_skipped"]:
        lines.append(f"- judge skipped: {s}")
    if report["lpips"]["message"]:
        lines.append(f"- {report['lpips']['message']}")
    lines.append("")
    lines += ["## Summary", "", f"At FAR {_far(summary['headline_far'])} (thresholds calibrated on the unprotected "
              "photos' different-identity pairs). PSR = protection success rate.", "",
              "| judge | threshold | dodging PSR vs own original | dodging PSR vs other photos of the person |",
              "| --- | --- | --- | --- |"]
    for name, row in summary["dodging"].items():
        lines.append(f"| {name} | {_fmt(row['threshold'], 4)} | {_fmt(row['own_original'])} | {_fmt(row['other_photos'])} |")
    lines += ["", f"Face SSIM {_fmt(summary['face_ssim_mean'], 4)}, face PSNR {_fmt(summary['face_psnr_mean'], 2)} dB, "
              f"face LPIPS ({report['lpips']['network'] or 'not computed'}) {_fmt(summary['face_lpips_mean'], 4)} (means).", ""]

    judges = report["judges"]
    lines += ["## Verification", "",
              "Dodging counts the pairs the judge matched before protection; success = no match after (no face "
              "counts as success and is listed). Impersonation: success = the protected photo matches the target. "
              "Margin = distance beyond the threshold in the protection's direction (positive = protected).", ""]
    _dodging_table(lines, "Dodging against the photo's own original", judges, "own_original")
    _dodging_table(lines, "Dodging against other photos of the same person", judges, "other_photos")
    imp_rows = []
    for name, j in judges.items():
        for source, by_far in (j["impersonation"] or {}).items():
            for far, r in by_far.items():
                imp_rows.append(f"| {name} | {source} | {_far(far)} | {_fmt(j['thresholds'][source][far]['threshold'], 4)} "
                                f"| {_fmt(r['psr'])} | {r['successes']}/{r['pairs']} | {_fmt(r['matched_before_rate'])} "
                                f"| {_margin(r['margin'])} |")
    if imp_rows:
        lines += ["### Impersonation", "", "| judge | thresholds | FAR | threshold | PSR | successes / pairs "
                  "| original already matched | margin q10 / median / q90 |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |", *imp_rows, ""]

    id_rows = []
    for name, j in judges.items():
        ident = j["identification"]
        if not ident:
            continue
        for k in cfg["ranks"]:
            b, a = ident["before"], ident["after"]
            tgt = "–" if a["targeted"] is None else f"{_fmt(b['targeted'][k])} -> {_fmt(a['targeted'][k])}"
            id_rows.append(f"| {name} | {k} | {_fmt(b['identified'][k])} | {_fmt(a['untargeted'][k])} | {tgt} "
                           f"| {a['probes_in_gallery']}/{a['probes']} |")
    if id_rows:
        lines += ["## Identification (gallery)", "",
                  "Rank-k untargeted success = the true identity is not among the k best-ranked gallery identities "
                  "(identities ranked by their best photo); targeted = the target identity is among them.", "",
                  "| judge | k | identified before | untargeted success after | targeted success before -> after "
                  "| probes in gallery |", "| --- | --- | --- | --- | --- | --- |", *id_rows, ""]
    fc_rows = []
    for name, j in judges.items():
        fc = (j["identification"] or {}).get("facecloak_top_n")
        if not fc or not fc["probes"]:
            continue
        for k in cfg["ranks"]:
            r = fc[f"psr_top{k}"]
            fc_rows.append(f"| {name} | top-{k} | {_fmt(r['before'])} | {_fmt(r['after'])} | {fc['probes']} |")
    if fc_rows:
        lines += ["### FaceCloak's top-n score", "",
                  "FaceCloak's protocol (`jaxprotect.eval.topn`): the gallery's n + C - 1 closest photos are walked "
                  "in order, each same-identity photo adds 1/C (C = that identity's gallery photos), the walk stops at "
                  "the n-th other identity; PSR = 1 - mean score.", "",
                  "| judge | n | PSR before | PSR after | probes |", "| --- | --- | --- | --- | --- |", *fc_rows, ""]

    rob_rows = []
    far = summary["headline_far"]
    for name, j in judges.items():
        for tf, e in j["robustness"].items():
            for kind in ("own_original", "other_photos"):
                table = e.get(kind)
                r = (table or {}).get("calibrated", {}).get(far)
                if r is None:
                    continue
                control = ((e.get("control") or {}).get(kind) or {}).get("calibrated", {}).get(far)
                rob_rows.append(f"| {name} | {e['description']} | {kind.replace('_', ' ')} | {_fmt(r['psr'])} "
                                f"| {_fmt(None if control is None else control['psr'])} | {_margin(r['margin'])} |")
    if rob_rows:
        lines += ["## Robustness", "", f"Dodging PSR at FAR {_far(far)} after the protected photo was re-encoded to a "
                  "file and read back; control = the same transform applied to the unprotected original (the "
                  "'success' the transform alone produces).", "",
                  "| judge | transform | reference | PSR | control | margin q10 / median / q90 |",
                  "| --- | --- | --- | --- | --- | --- |", *rob_rows, ""]

    q = report["quality"]
    lines += ["## Image quality", "", "| metric | n | mean | min | median | max |", "| --- | --- | --- | --- | --- | --- |"]
    for key, label in (("psnr", "PSNR, whole photo (dB)"), ("ssim", "SSIM, whole photo"), ("face_psnr", "PSNR, face (dB)"),
                       ("face_ssim", "SSIM, face"), ("face_lpips", "LPIPS, face 256x256")):
        s = q.get(key)
        if s:
            lines.append(f"| {label} | {s['n']} | {_fmt(s['mean'], 4)} | {_fmt(s['q0'], 4)} | {_fmt(s['q50'], 4)} "
                         f"| {_fmt(s['q100'], 4)} |")
    lines.append("")
    dist = report["distribution"]
    if dist:
        lines += ["## Distribution distances (originals vs protected, as sets)", ""]
        for d in dist.values():
            if "frechet" in d:
                lines.append(f"- {d['frechet_name']}: {_fmt(d['frechet'], 4)}; {d['kid_name']}: "
                             f"{_fmt(d['kid']['kid'], 5)} ± {_fmt(d['kid']['std'], 5)} ({d['kid']['kernel']}, "
                             f"{d['kid']['subsets']} subsets of {d['kid']['subset_size']}); n = {d['n_originals']} / "
                             f"{d['n_protected']}, {d['dimension']}-D")
            if d.get("note"):
                lines.append(f"  - note: {d['note']}")
        lines.append("")
    if report.get("plots_message"):
        lines += [report["plots_message"], ""]
    for png in report.get("plots", []):
        lines.append(f"![{png}]({png})")
    return "\n".join(lines) + "\n"


def _plots(report: dict, folder: Path) -> tuple[list[str], str | None]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "Plots skipped: matplotlib is not installed (`pip install jaxprotect[experiments]`)."
    far = report["summary"]["headline_far"]
    written = []
    judges = {n: j for n, j in report["judges"].items()}
    margins = {n: (j["dodging"]["own_original"]["calibrated"].get(far) or {}).get("margins") for n, j in judges.items()}
    margins = {n: [m for m in v if m is not None and math.isfinite(m)] for n, v in margins.items() if v}
    if margins:
        fig, axes = plt.subplots(1, len(margins), figsize=(4.5 * len(margins), 3.2), squeeze=False)
        for ax, (name, m) in zip(axes[0], margins.items()):
            ax.hist(m, bins=max(5, min(30, len(m))), color="tab:blue")
            ax.axvline(0, color="k", lw=1)
            ax.set_title(f"{name}: dodging margin, FAR {_far(far)}")
            ax.set_xlabel("beyond threshold (> 0 = protected)")
        fig.tight_layout()
        written.append(_save(fig, folder / "dodging_margins.png"))
        plt.close(fig)
    rob = {n: j["robustness"] for n, j in judges.items() if j["robustness"]}
    if rob:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        names = list(rob)
        tfs = ["clean"] + list(next(iter(rob.values())))
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            clean = report["summary"]["dodging"][name]["own_original"]
            vals = [clean] + [(rob[name][tf]["own_original"]["calibrated"].get(far) or {}).get("psr") for tf in tfs[1:]]
            ax.bar([x + i * width for x in range(len(tfs))], [v if v is not None else 0 for v in vals], width, label=name)
        ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(tfs))], tfs, rotation=20)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"dodging PSR (own original), FAR {_far(far)}")
        ax.legend()
        fig.tight_layout()
        written.append(_save(fig, folder / "robustness_psr.png"))
        plt.close(fig)
    return written, None


def _save(fig, path: Path) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path.name


def write_report(report: dict, output_dir, plots: bool = True) -> list[str]:
    """Write ``report.json``, ``report.md`` and (``plots`` and matplotlib present) the PNGs into ``output_dir``.

    Returns the written file names. Every file is written to a temporary name and renamed into place.
    """
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if plots:
        report["plots"], report["plots_message"] = _plots(report, folder)
    else:
        report["plots"], report["plots_message"] = [], "Plots not requested."
    _write_text(folder / "report.json", json.dumps(to_jsonable(report), indent=1))
    _write_text(folder / "report.md", render_markdown(report))
    return ["report.json", "report.md", *report["plots"]]
