"""One protocol for every method (issue 14): each method at its default setting on the same photos,
the same seeds and the same judges; one table and one PSR-vs-LPIPS plot.

The protocol is experiments/publishable.py's (:func:`publishable.run`): the deepface photos not tuned
on (12 first photos of same-person pairs, each judged against the pair's OTHER photo) plus the FFHQ
sample, scikit-image's astronaut, deepface's 7-face selfie and the couple (each protected face judged
against the same face of the original photo); photo ``i`` protected with ``fold_in(key(0), i)``;
judges dlib and FaceNet-CASIA at thresholds calibrated at FAR 1% on deepface's different-person
pairs; real JPEG 75 through files; face SSIM and LPIPS-Alex on the MTCNN box; wall and process CPU
time per photo. A judge whose network is one of the run's surrogates is shown in brackets and never
counts.

Methods: the pixel runs of ``publishable.RUNS`` (fullres presets, TIP-IM, PGD, MI-FGSM, TI-DIM at
their defaults) and ``facecloak``: ``jaxprotect protect --method facecloak`` at its defaults
(:class:`~jaxprotect.methods.facecloak.runners.FaceCloakSettings`: a cloak learnt from each photo
with 8 synthetic images and added to it, faithful mode, MobileFaceNet surrogate; it cloaks the
photo's largest face only). CLIP2Protect is listed with the reason it cannot run here.

    python experiments/compare_methods.py run METHOD...   -> experiments/results/publishable_runs/METHOD.json
    python experiments/compare_methods.py render          -> experiments/results/compare_methods.{md,json}
                                                              + compare_methods_psr_lpips.png
"""
from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import publishable  # noqa: E402
from publishable_render import JUDGES  # noqa: E402
from publishable_render import summarise as summarise_run  # noqa: E402

RESULTS = HERE / "results"
OUT = RESULTS / "compare_methods"
FACECLOAK = "facecloak"
# (run name, what it is): the rows of the table, in order; "default" marks what a user gets unasked
COMPARED = (
    ("fullres-balanced", "jaxprotect's default (fullres balanced, ensemble)"),
    ("fullres-subtle", "fullres preset"),
    ("fullres-strong", "fullres preset"),
    ("fullres-balanced-mfn", "fullres balanced, leave-one-out for FaceNet-CASIA"),
    ("tipim-default", "TIP-IM at its published default"),
    ("pgd-default", "PGD at its usual default"),
    ("mifgsm-default", "MI-FGSM at its published default"),
    ("tidim-default", "TI-DIM at its published default"),
    (FACECLOAK, "FaceCloak at its published default"),
)
FULLRES_CURVE = ("fullres-subtle", "fullres-balanced", "fullres-strong")
EXTRA_PHOTOS = {"ffhq_sample": "the FFHQ sample", "couple": "deepface's couple", "selfie": "deepface's 7-face selfie",
                "astronaut": "scikit-image's astronaut"}


# ------------------------------------------------------------------------------------------------
# FaceCloak behind publishable's protector interface


@dataclasses.dataclass
class CloakedFace:
    """The face a cloak was added to: ``index`` among the run's detections (-1: none overlaps),
    ``box`` (x1, y1, x2, y2) FaceCloak used, in photo pixels, and that detection's ``prob``."""

    index: int
    box: list
    prob: float


@dataclasses.dataclass
class CloakedPhoto:
    """What :meth:`FaceCloakProtector.protect` returns: ``image`` uint8 [H, W, 3] at the photo's
    resolution, ``faces`` one :class:`CloakedFace`, ``skipped`` the other detections, ``quality``
    PSNR/SSIM of the whole photo."""

    image: np.ndarray
    faces: list
    skipped: list
    quality: dict


def _iou(box, boxes) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return inter / np.maximum(area, 1e-9)


class FaceCloakProtector:
    """``protect --method facecloak``'s per-photo step (:func:`~jaxprotect.methods.facecloak.run.cloak_photo`
    with :class:`FaceCloakSettings`' fields, as ``FaceCloakRunner`` calls it) with publishable's
    ``protect(photo, key, detections=, path=)`` interface. FaceCloak finds faces itself (one MTCNN
    pass) and cloaks the largest; ``detections`` only name which of the run's faces that is."""

    def __init__(self, settings, detector):
        from jaxprotect.methods.facecloak.runners import load_recognisers

        self.settings, self.detector = settings, detector
        self.config = settings.config
        self.recognisers, self.params = load_recognisers(settings.surrogates)

    def protect(self, photo: np.ndarray, key, detections=None, path=None) -> CloakedPhoto:
        """Learn a cloak from ``photo`` (uint8 [H, W, 3] RGB) with ``key`` and add it to the photo."""
        from jaxprotect.methods.facecloak.run import cloak_photo
        from jaxprotect.methods.pixel.protector import image_quality

        s = self.settings
        _, applied = cloak_photo(photo, self.recognisers, self.params, self.detector, s.config, key,
                                 augment=s.augment, output=s.output, path=path)
        box = [float(v) for v in applied.original_box]
        index, prob = -1, float("nan")
        boxes = np.asarray(detections.boxes) if detections is not None else np.zeros((0, 4))
        if len(boxes):
            overlap = _iou(np.asarray(box), boxes[:, :4])
            if overlap.max() > 0.3:
                index = int(np.argmax(overlap))
                prob = float(np.asarray(detections.probs)[index])
        skipped = [{"index": i, "box": [float(v) for v in boxes[i, :4]], "reason": "FaceCloak cloaks the largest face only"}
                   for i in range(len(boxes)) if i != index]
        return CloakedPhoto(applied.image, [CloakedFace(index, box, prob)], skipped, image_quality(photo, applied.image))


def facecloak_run(name: str, detector) -> publishable.RunSpec:
    """The :class:`publishable.RunSpec` of FaceCloak at ``protect --method facecloak``'s defaults."""
    from jaxprotect.detect.find_faces import FaceSearch
    from jaxprotect.methods.facecloak.runners import FaceCloakSettings

    settings = FaceCloakSettings()
    c = settings.config
    label = (f"FaceCloak, {c.mode}, eps {c.eps_levels:g}, {c.epochs} epochs, augment {settings.augment}, "
             "largest face")
    described = {"config": c.to_dict(), "surrogates": list(settings.surrogates), "augment": settings.augment,
                 "output": settings.output, "faces": "the largest MTCNN face of each photo (FaceCloak's rule)"}
    return publishable.RunSpec(FaceCloakProtector(settings, detector), tuple(settings.surrogates), described,
                               FaceSearch(), label)


def build(name: str, detector) -> publishable.RunSpec:
    """The run ``name``: ``facecloak`` or one of ``publishable.RUNS``."""
    if name == FACECLOAK:
        return facecloak_run(name, detector)
    if name in publishable.RUNS:
        return publishable.pixel_run(name, detector)
    raise ValueError(f"unknown method {name!r}; choose {FACECLOAK} or one of {', '.join(publishable.RUNS)}")


# ------------------------------------------------------------------------------------------------
# Methods that cannot run here


def unavailable_methods() -> dict:
    """{label: why it is not in the table} for the methods that cannot run on this machine."""
    from jaxprotect.methods.clip2protect.checkpoints import CHECKPOINT_KINDS, resolve_checkpoints

    _, missing = resolve_checkpoints(kinds=CHECKPOINT_KINDS)
    if not missing:
        return {"CLIP2Protect": "its checkpoints are installed but it has no run in this comparison "
                                "(an impersonation method: it needs a target identity)"}
    kinds = [m.strip().split(":")[0] for m in missing]
    return {"CLIP2Protect": "cannot run here: no offline copy of its weights (StyleGAN2-FFHQ generator, e4e "
                            "encoder, CLIP ViT-B/32 and the AMT-GAN surrogates IR152/IRSE50/FaceNet/MobileFace; "
                            f"missing: {', '.join(kinds)}); not measured, no number"}


# ------------------------------------------------------------------------------------------------
# Render


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _bracket(text: str, independent: bool) -> str:
    return text if independent else f"({text})"


def _self(d: dict) -> str:
    return f"{_pct(d['self_after'])} [{d['self_faces']}]"


def _quantiles(q) -> str:
    return "-" if q is None else " / ".join(f"{v:+.3f}" for v in q)


def summarise(data: dict) -> dict:
    """publishable_render's summary of one run JSON plus the run's seed, settings and photo names."""
    s = summarise_run(data)
    s["seed"] = data.get("seed", 0)
    s["settings"] = data["settings"]
    s["photos"] = list(data["photos"])
    s["skipped_faces"] = int(sum(r.get("skipped", 0) for r in data["photos"].values()))
    return s


def markdown(rows: list, missing: list, unavailable: dict, meta: dict) -> str:
    """The report: protocol, the table, margins, load averages. ``rows`` (role, summary) pairs."""
    cal = meta["calibration"]
    photos = meta["photos"]
    deepface = [p for p in photos if p.endswith(".jpg")]
    others = [p for p in photos if not p.endswith(".jpg")]
    first = rows[0][1] if rows else None
    lines = [
        "# Every method at its default, one protocol (issue 14)",
        "",
        "Produced by `experiments/compare_methods.py` (`run METHOD` per method through experiments/publishable.py's "
        "`run`, then `render`). Same photos, same seeds, same judges for every row.",
        "",
        f"- Photos ({len(photos)}, test data, never committed): deepface's {len(deepface)} first photos of same-person "
        f"pairs ({', '.join(deepface)}), each judged against the pair's OTHER photo (pair PSR); and "
        f"{', '.join(f'{o} ({EXTRA_PHOTOS.get(o, o)})' for o in others)}, each "
        "protected face judged against the same face of the original photo (self PSR; only faces the judge's own "
        "detector finds).",
        f"- Tuning: the fullres presets were tuned on 4 deepface photos ({', '.join(meta['tuned_on'])}, "
        "publishable_common.TUNE_PHOTOS) that are left out of this report with their pairs; the papers' methods "
        "(TIP-IM, PGD, MI-FGSM, TI-DIM, FaceCloak) run at their published defaults, untuned here.",
        f"- Seeds: photo i (in the order above) is protected with `jax.random.fold_in(jax.random.key(seed), i)`, "
        f"seed {', '.join(str(v) for v in sorted({s['seed'] for _, s in rows}))} for every run.",
        "- Judges: dlib ResNet (Euclidean distance) and FaceNet-CASIA via OpenCV (cosine similarity); thresholds "
        "calibrated at FAR 1% on deepface's different-person pairs (`calibrate_threshold`: the floor(0.01 n)+1-th "
        "closest negative): "
        + "; ".join(f"{j} {c['threshold']:.4f} ({c['metric']}, FAR reached {100 * c['far']:.2f}% on {c['negatives']} "
                    "pairs)" for j, c in cal.items()) + ".",
        "- A judge whose network is one of the run's surrogates is shown in brackets and never counts (the fullres "
        "ensemble attacks the JAX port of FaceNet-CASIA; `fullres-balanced-mfn` is its leave-one-out run).",
        "- PSR (protection success rate, dodging) = share of the pairs the judge matched before protection that it no "
        "longer matches; a protected face the judge's detector no longer finds counts as protected. JPEG 75 = the "
        "protected photo saved by Pillow at quality 75 (4:2:0) and read back from the file.",
        "- Quality on the MTCNN box of each protected face: SSIM, LPIPS (AlexNet, real weights). Time per photo: wall "
        "and process CPU of the protection (face finding before it excluded, except FaceCloak which finds its face "
        "itself), median over the photos.",
        "",
    ]
    if first is not None:
        d, c = first["judges"]["dlib"], first["judges"]["facenet_casia"]
        lines += [f"Pairs judged: dlib {d['pairs']}, FaceNet-CASIA {c['pairs']} (the pairs each judge matched before "
                  f"protection; the same for every run). Self PSR: in square brackets after it, the number of protected faces the "
                  "judge found in the original photo.", ""]
    lines += [
        "| method | role | surrogates | dlib PSR FAR 1% (no JPEG / JPEG 75) | FaceNet-CASIA PSR FAR 1% (no JPEG / "
        "JPEG 75) | self PSR dlib / CASIA (no JPEG) | faces protected | face SSIM mean | face LPIPS median (mean) | "
        "time per photo wall / CPU s (median) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for role, s in rows:
        d, c = s["judges"]["dlib"], s["judges"]["facenet_casia"]
        lines.append(
            f"| {s['label']} (`{s['name']}`) | {role} | {', '.join(s['surrogates'])} | "
            f"{_bracket(_pct(d['psr_after']) + ' / ' + _pct(d['psr_jpeg75']), d['independent'])} | "
            f"{_bracket(_pct(c['psr_after']) + ' / ' + _pct(c['psr_jpeg75']), c['independent'])} | "
            f"{_bracket(_self(d), d['independent'])} / {_bracket(_self(c), c['independent'])} | "
            f"{s['faces']} | {s['face_ssim_mean']:.4f} | {s['face_lpips_median']:.4f} ({s['face_lpips_mean']:.4f}) | "
            f"{s['wall_median_s']:.1f} / {s['cpu_median_s']:.1f} |")
    for label, why in unavailable.items():
        lines.append(f"| {label} | - | - | {why} | - | - | - | - | - | - |")
    for name in missing:
        lines.append(f"| `{name}` | - | - | not run yet: `python experiments/compare_methods.py run {name}` | - | - | "
                     "- | - | - | - |")
    lines += ["", "## Margin to the threshold (pairs, protected side positive)", "",
              "Quantiles 10 / 25 / 50 / 75 / 90 % over the judged pairs, in the judge's units (dlib: distance minus "
              "the threshold; FaceNet-CASIA: threshold minus the cosine). Brackets: surrogate judge, not counted.", "",
              "| method | dlib no JPEG | dlib JPEG 75 | FaceNet-CASIA no JPEG | FaceNet-CASIA JPEG 75 |",
              "| --- | --- | --- | --- | --- |"]
    for _, s in rows:
        cells = []
        for j in JUDGES:
            d = s["judges"][j]
            cells += [_bracket(_quantiles(d["margin_q"]), d["independent"]),
                      _bracket(_quantiles(d["margin_q_jpeg75"]), d["independent"])]
        lines.append(f"| `{s['name']}` | " + " | ".join(cells) + " |")
    lines += ["", "## Notes", ""]
    names = {s["name"] for _, s in rows}
    if FACECLOAK in names:
        lines.append("- FaceCloak cloaks ONE face per photo (the largest MTCNN face, as its code does), so on the couple "
                     "and the selfie only that face is protected and judged; the other runs protect every face MTCNN "
                     "gives >= 0.9. Its time includes learning the cloak (8 synthetic images, 10 epochs) and its own "
                     "face detection.")
    lines.append("- dlib at its usual 0.6 and JPEG 90/50 are in compare_methods.json (`psr06_*`, `psr_jpeg90`, "
                 "`psr_jpeg50`).")
    lines += ["- Load average (1 min) at the start and end of each run (2 shared cores: wall times are inflated, CPU "
              "times steadier): " + "; ".join(f"`{s['name']}` {s['loadavg'][0][0]:.1f} -> {s['loadavg'][1][0]:.1f}"
                                              for _, s in rows) + ".", ""]
    return "\n".join(lines)


def plot(rows: list, path: Path) -> None:
    """x: face LPIPS-Alex median; y: PSR at FAR 1%, filled marker no JPEG, open marker after JPEG 75; one
    panel per judge, independent runs only; the fullres presets joined as a curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(15, 5.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, j in zip(axes, JUDGES):
        curve = [s for _, s in rows if s["name"] in FULLRES_CURVE and s["judges"][j]["independent"]]
        curve.sort(key=lambda s: s["face_lpips_median"])
        if len(curve) > 1:
            ax.plot([s["face_lpips_median"] for s in curve], [s["judges"][j]["psr_after"] for s in curve], "-",
                    color="0.6", lw=1, zorder=0)
        for k, (_, s) in enumerate(rows):
            d = s["judges"][j]
            if not d["independent"] or d["psr_after"] is None:
                continue
            x, colour = s["face_lpips_median"], colours[k % len(colours)]
            ax.plot(x, d["psr_after"], "o", color=colour, markersize=8, label=s["name"])
            ax.plot(x, d["psr_jpeg75"], "o", mfc="none", color=colour, markersize=8)
            ax.annotate("", (x, d["psr_jpeg75"]), (x, d["psr_after"]),
                        arrowprops=dict(arrowstyle="->", color=colour, lw=0.8))
            ax.annotate(s["name"], (x, d["psr_after"]), (6, -3), textcoords="offset points", fontsize=7, color=colour)
        ax.set_xlabel("face LPIPS (AlexNet), median")
        ax.set_ylabel(f"{j} dodging PSR at FAR 1%")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"{j}: filled = no JPEG, open = after real JPEG 75 (independent runs only)", fontsize=9)
        ax.grid(alpha=0.3)
        if not ax.get_legend_handles_labels()[0]:
            ax.text(0.5, 0.5, "no run independent of this judge yet", ha="center", transform=ax.transAxes)
    handles = {}
    for ax in axes:
        handles.update(zip(ax.get_legend_handles_labels()[1], ax.get_legend_handles_labels()[0]))
    if handles:
        fig.legend(list(handles.values()), list(handles), fontsize=8, loc="center right")
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    tmp = path.with_name("." + path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def render(run_dir: Path = publishable.RUN_DIR, out: Path = OUT, unavailable: dict | None = None,
           png: bool = True) -> dict:
    """Read ``run_dir/<name>.json`` for the :data:`COMPARED` runs; write ``out``.md/.json (and the plot).

    Raises ``ValueError`` when the runs disagree on the photos, thresholds or tuning photos (then
    they were not run under one protocol). Returns the JSON written."""
    unavailable = unavailable_methods() if unavailable is None else unavailable
    rows, missing, raw = [], [], {}
    for name, role in COMPARED:
        path = run_dir / f"{name}.json"
        if not path.exists():
            missing.append(name)
            continue
        raw[name] = json.loads(path.read_text())
        rows.append((role, summarise(raw[name])))
    if not rows:
        raise ValueError(f"no run of {[n for n, _ in COMPARED]} in {run_dir}")
    ref = raw[rows[0][1]["name"]]
    for name, data in raw.items():
        for key in ("thresholds", "tuned_on"):
            if data[key] != ref[key]:
                raise ValueError(f"{name}: {key} differ from {rows[0][1]['name']}'s: not one protocol")
        if list(data["photos"]) != list(ref["photos"]):
            raise ValueError(f"{name}: photos {list(data['photos'])} differ from {list(ref['photos'])}")
    meta = {"calibration": ref["calibration"], "tuned_on": ref["tuned_on"], "photos": list(ref["photos"]),
            "unavailable": unavailable, "not_run": missing, "rendered": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    _write(out.with_suffix(".md"), markdown(rows, missing, unavailable, meta))
    slim = copy.deepcopy([dict(s, role=role) for role, s in rows])
    for s in slim:
        for d in s["judges"].values():
            d.pop("margins", None)
    data = {"meta": meta, "methods": slim}
    _write(out.with_suffix(".json"), json.dumps(data, indent=1) + "\n")
    if png:
        plot(rows, out.with_name(out.name + "_psr_lpips.png"))
    return data


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 and args[0] == "run":
        for name in args[1:]:  # every name checked before anything is loaded
            if name != FACECLOAK and name not in publishable.RUNS:
                raise SystemExit(f"unknown method {name!r}; choose {FACECLOAK} or one of {', '.join(publishable.RUNS)}")
        for name in args[1:]:
            publishable.run(name, build=build)
        return 0
    if args and args[0] == "render":
        render()
        print(f"wrote {OUT.with_suffix('.md')}")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
