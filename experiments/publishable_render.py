"""Tables and figures of experiments/publishable.py from its per-run JSON files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

JUDGES = ("dlib", "facenet_casia")
TAGS = ("after", "jpeg90", "jpeg75", "jpeg50")
ORDER = ("tipim-default", "pgd-default", "mifgsm-default", "tidim-default", "fullres-subtle", "fullres-balanced",
         "fullres-strong", "fullres-balanced-eot", "fullres-subtle-mfn", "fullres-balanced-mfn", "fullres-strong-mfn")


def _protected(judge: str, score, threshold: float) -> bool:
    if score is None:
        return True  # the judge finds no face: counted as protected
    return score >= threshold if judge == "dlib" else score <= threshold


def _margin(judge: str, score, threshold: float):
    if score is None:
        return None
    return score - threshold if judge == "dlib" else threshold - score


def summarise(data: dict) -> dict:
    """Per judge: pair PSR per tag (FAR 1%; dlib also at 0.6), margins, self-match PSR; quality; time."""
    thr = data["thresholds"]
    out = {"name": data["name"], "label": data["label"], "surrogates": data["surrogates"], "judges": {}}
    for j in JUDGES:
        pairs = [p for row in data["photos"].values() for p in row.get("pairs", []) if p["judge"] == j]
        selfs = [s for row in data["photos"].values() for s in row.get("self", []) if s["judge"] == j and s["found"]]
        d = {"independent": j not in data["surrogate_judges"], "pairs": len(pairs), "self_faces": len(selfs)}
        for tag in TAGS:
            d[f"psr_{tag}"] = float(np.mean([_protected(j, p[tag], thr[j]) for p in pairs])) if pairs else None
            d[f"self_{tag}"] = float(np.mean([_protected(j, s[tag], thr[j]) for s in selfs])) if selfs else None
            if j == "dlib":
                d[f"psr06_{tag}"] = float(np.mean([_protected(j, p[tag], 0.6) for p in pairs])) if pairs else None
        m = [_margin(j, p["after"], thr[j]) for p in pairs if p["after"] is not None]
        d["margins"] = m
        d["margin_q"] = [float(v) for v in np.quantile(m, [0.1, 0.25, 0.5, 0.75, 0.9])] if m else None
        mj = [_margin(j, p["jpeg75"], thr[j]) for p in pairs if p["jpeg75"] is not None]
        d["margin_q_jpeg75"] = [float(v) for v in np.quantile(mj, [0.1, 0.25, 0.5, 0.75, 0.9])] if mj else None
        out["judges"][j] = d
    faces = [f for row in data["photos"].values() for f in row["faces"]]
    out["faces"] = len(faces)
    out["face_lpips_mean"] = float(np.mean([f["quality"]["face_lpips"] for f in faces]))
    out["face_lpips_median"] = float(np.median([f["quality"]["face_lpips"] for f in faces]))
    out["face_ssim_mean"] = float(np.mean([f["quality"]["face_ssim"] for f in faces if f["quality"]["face_ssim"]]))
    out["face_psnr_mean"] = float(np.mean([f["quality"]["face_psnr"] for f in faces]))
    out["wall_median_s"] = float(np.median([r["wall_s"] for r in data["photos"].values()]))
    out["cpu_median_s"] = float(np.median([r["cpu_s"] for r in data["photos"].values()]))
    out["loadavg"] = data["loadavg"]
    return out


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _cell(d: dict, tag: str) -> str:
    s = f"{_pct(d[f'psr_{tag}'])}"
    return s if d["independent"] else f"({s}, surrogate)"


def markdown(summaries: list, meta: dict) -> str:
    cal = meta["calibration"]
    lines = [
        "# Protection a person would publish: today's defaults vs the fullres presets (issue 15)",
        "",
        f"Produced by `experiments/publishable.py` (one run per method, `run NAME`; then `render`). Photos NOT used "
        f"for tuning: deepface's 12 first photos of same-person pairs other than {', '.join(meta['tuned_on'])} (the "
        "tuning photos, experiments/results/publishable_tune.md), each judged against the pair's OTHER photo; and the "
        "FFHQ sample, scikit-image's astronaut, deepface's 7-face selfie and the couple, each protected face judged "
        "against the same face of the original photo ('self' columns; only faces the judge's own detector finds).",
        "",
        "Thresholds: calibrated at FAR 1% on deepface's different-person pairs: "
        + "; ".join(f"{j} {c['threshold']:.4f} ({c['metric']}, FAR reached {c['far']:.4f} on {c['negatives']} pairs)"
                    for j, c in cal.items())
        + ". dlib also at its usual 0.6. A judge whose network was a surrogate of the run is shown in brackets and "
          "never counts: the ensemble runs (MobileFaceNet + the JAX port of FaceNet-CASIA) are judged independently "
          "by dlib only; the `-mfn` runs (MobileFaceNet alone) are the leave-one-out runs for FaceNet-CASIA.",
        "",
        "Dodging success (PSR) = share of the same-person pairs the judge matched before protection that it no longer "
        "matches after; JPEG = the protected photo saved by Pillow at that quality (4:2:0) and read back from the file.",
        "",
        "| method | dlib PSR FAR 1% | dlib after JPEG 75 | dlib PSR at 0.6 | dlib at 0.6 after JPEG 75 | FaceNet-CASIA PSR FAR 1% "
        "| FaceNet-CASIA after JPEG 75 | self: dlib / CASIA | face SSIM | face LPIPS (alex) mean / median | time per photo "
        "wall / CPU s (median) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in summaries:
        d, c = s["judges"]["dlib"], s["judges"]["facenet_casia"]
        selfs = f"{_pct(d['self_after'])} / {_pct(c['self_after']) if c['independent'] else '(' + _pct(c['self_after']) + ')'}"
        lines.append(
            f"| {s['label']} | {_cell(d, 'after')} | {_cell(d, 'jpeg75')} | {_pct(d['psr06_after'])} | "
            f"{_pct(d['psr06_jpeg75'])} | {_cell(c, 'after')} | {_cell(c, 'jpeg75')} | {selfs} | "
            f"{s['face_ssim_mean']:.4f} | {s['face_lpips_mean']:.4f} / {s['face_lpips_median']:.4f} | "
            f"{s['wall_median_s']:.0f} / {s['cpu_median_s']:.0f} |")
    lines += ["", f"Pairs judged: dlib {summaries[0]['judges']['dlib']['pairs']}, FaceNet-CASIA "
              f"{summaries[0]['judges']['facenet_casia']['pairs']} (the pairs each judge matched before protection); "
              f"faces protected per run: {summaries[0]['faces']}.", "",
              "## Re-compression: PSR after real JPEG 90 / 75 / 50 (FAR 1%)", "",
              "| method | dlib none / 90 / 75 / 50 | FaceNet-CASIA none / 90 / 75 / 50 |", "| --- | --- | --- |"]
    for s in summaries:
        cells = []
        for j in JUDGES:
            d = s["judges"][j]
            text = " / ".join(_pct(d[f"psr_{t}"]) for t in TAGS)
            cells.append(text if d["independent"] else f"({text}, surrogate)")
        lines.append(f"| {s['label']} | {cells[0]} | {cells[1]} |")
    lines += ["", "## Margin to the threshold (judged distance after protection, protected side positive)", "",
              "Quantiles 10 / 25 / 50 / 75 / 90 % over the judged pairs, in the judge's units (dlib: Euclidean "
              "distance minus the threshold; FaceNet-CASIA: threshold minus the cosine).", "",
              "| method | dlib | FaceNet-CASIA |", "| --- | --- | --- |"]
    for s in summaries:
        cells = []
        for j in JUDGES:
            q = s["judges"][j]["margin_q"]
            text = "-" if q is None else " / ".join(f"{v:+.3f}" for v in q)
            cells.append(text if s["judges"][j]["independent"] else f"({text})")
        lines.append(f"| {s['label']} | {cells[0]} | {cells[1]} |")
    lines += ["", "Load average (1 min) during the runs: " + "; ".join(
        f"{s['name']} {s['loadavg'][0][0]:.1f}-{s['loadavg'][1][0]:.1f}" for s in summaries)
        + " (2 shared cores: wall times are inflated, CPU times steadier).", ""]
    return "\n".join(lines)


def plot(summaries: list, path: Path) -> None:
    """PSR (FAR 1%, independent judges only) vs face LPIPS, and the margin distributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    for ax, j in zip(axes[:2], JUDGES):
        for group, style in (("-mfn", "s--"), ("", "o-")):
            pts = [s for s in summaries if s["name"].startswith("fullres") and s["name"].endswith(group or "")
                   and (group or not s["name"].endswith("-mfn")) and "eot" not in s["name"]
                   and s["judges"][j]["independent"]]
            if pts:
                ax.plot([s["face_lpips_mean"] for s in pts], [s["judges"][j]["psr_after"] for s in pts], style,
                        label="fullres " + ("MobileFaceNet only" if group else "ensemble") + " (subtle/balanced/strong)")
        for s in summaries:
            if s["judges"][j]["independent"] and not s["name"].startswith("fullres"):
                ax.plot(s["face_lpips_mean"], s["judges"][j]["psr_after"], "*", markersize=13, label=s["label"])
        ax.set_xlabel("face LPIPS (AlexNet), mean")
        ax.set_ylabel(f"{j} dodging success at FAR 1%")
        ax.set_title(f"{j} (independent runs only)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    data, labels = [], []
    for s in summaries:
        for j in JUDGES:
            if s["judges"][j]["independent"] and s["judges"][j]["margins"]:
                data.append(s["judges"][j]["margins"])
                labels.append(f"{s['name']}\n{j}")
    ax.boxplot(data, vert=False)
    ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=6)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("margin past the FAR-1% threshold (>0: protected)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render(run_dir: Path, out: Path) -> int:
    runs = {p.stem: json.loads(p.read_text()) for p in sorted(run_dir.glob("*.json"))}
    names = [n for n in ORDER if n in runs] + [n for n in runs if n not in ORDER]
    summaries = [summarise(runs[n]) for n in names]
    meta = {"calibration": runs[names[0]]["calibration"], "tuned_on": runs[names[0]]["tuned_on"]}
    out.with_suffix(".md").write_text(markdown(summaries, meta))
    import copy

    slim = copy.deepcopy(summaries)
    for s in slim:
        for d in s["judges"].values():
            d.pop("margins", None)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "summaries": slim}, indent=1) + "\n")
    plot(summaries, out.with_name(out.name + "_psr_lpips.png"))
    print(f"wrote {out.with_suffix('.md')}")
    return 0
