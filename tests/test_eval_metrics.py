"""jaxprotect.eval metrics against independent references: skimage (PSNR/SSIM), scipy/closed forms
(Fréchet, KID), hand-computed toy sets (verification PSR, margins, identification ranks)."""
from __future__ import annotations

import numpy as np
import pytest

from jaxprotect.eval import distribution, identification, quality, verification


def _photos(seed=0, shape=(48, 64, 3)):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, shape), 0, 255).astype(np.uint8)
    return a, b


# ---------------------------------------------------------------- quality vs skimage
def test_psnr_and_ssim_match_skimage():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    for seed in range(3):
        a, b = _photos(seed)
        assert quality.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-4)
        ref = structural_similarity(a.astype(np.float64) / 255, b.astype(np.float64) / 255, channel_axis=-1,
                                    data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert quality.ssim(a, b) == pytest.approx(ref, abs=1e-6)
    assert quality.psnr(a, a) == float("inf") and quality.ssim(a, a) == pytest.approx(1.0, abs=1e-6)


def test_photo_quality_face_crop_and_resize():
    a, b = _photos(1, (60, 80, 3))
    box = (10.4, 5.5, 50.6, 45.5)  # banker's rounding: rows 6:46 (5.5 -> 6, 45.5 -> 46), cols 10:51
    q = quality.photo_quality(a, b, box)
    assert q["face_box"] == [6, 46, 10, 51]
    assert q["face_psnr"] == pytest.approx(quality.psnr(a[6:46, 10:51], b[6:46, 10:51]))
    assert q["face_ssim"] == pytest.approx(quality.ssim(a[6:46, 10:51], b[6:46, 10:51]))
    assert q["face_lpips"] is None and not q["original_resized"]
    # a protected photo saved at another size: the original is resized to it and the box scaled
    big = quality.resize_like(b, (120, 160))
    q2 = quality.photo_quality(a, big, box)
    assert q2["original_resized"] and q2["face_box"] == [11, 91, 21, 101]


# ---------------------------------------------------------------- Fréchet / KID
def test_frechet_distance_closed_form_and_scipy():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.diag([1.0, 4.0, 0.25]), np.diag([4.0, 1.0, 1.0])
    # diagonal covariances: |mu1 - mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2))
    ref = 5.0 + (1 + 4 - 4) + (4 + 1 - 4) + (0.25 + 1 - 1)
    assert distribution.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, abs=1e-10)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 4)), rng.normal(0.5, 2.0, size=(150, 4)) @ rng.normal(size=(4, 4))
    from scipy.linalg import sqrtm

    m1, c1 = x.mean(0), np.cov(x, rowvar=False)
    m2, c2 = y.mean(0), np.cov(y, rowvar=False)
    ref = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * np.real(sqrtm(c1 @ c2)))
    assert distribution.frechet_distance(*distribution.feature_statistics(x), *distribution.feature_statistics(y)) \
        == pytest.approx(ref, rel=1e-9)
    assert distribution.frechet_distance(m1, c1, m1, c1) == pytest.approx(0.0, abs=1e-8)


def test_kid_is_the_unbiased_polynomial_mmd():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 3)), rng.normal(0.3, 1.0, size=(6, 3))
    d = x.shape[1]

    def k(a, b):
        return (a @ b / d + 1.0) ** 3

    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    assert distribution.mmd2_unbiased(x, y) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-12)
    # subsets: each value is the MMD of a subset pair drawn from the seed; same seed -> same result
    r1 = distribution.kid(x, y, subsets=5, subset_size=4, seed=3)
    r2 = distribution.kid(x, y, subsets=5, subset_size=4, seed=3)
    assert r1 == r2 and r1["subset_size"] == 4 and "^3" in r1["kernel"]
    same = distribution.kid(x[:6], y, subsets=1, subset_size=100)
    assert same["subsets"] == 1 and same["kid"] == pytest.approx(distribution.mmd2_unbiased(x[:6], y))
    # unbiased: over independent sample pairs of ONE distribution the estimate averages to 0 (within 3
    # standard errors), while a shifted distribution gives a clearly positive value
    same = [distribution.mmd2_unbiased(rng.normal(size=(40, 3)), rng.normal(size=(40, 3))) for _ in range(200)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))
    shifted = distribution.mmd2_unbiased(rng.normal(size=(40, 3)), rng.normal(1.0, 1.0, size=(40, 3)))
    assert shifted > 10 * np.std(same) / np.sqrt(len(same))


# ---------------------------------------------------------------- verification on a toy set
def test_calibration_on_toy_negatives():
    neg = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    cal = verification.calibrate(neg, (0.1, 0.2, 0.01), higher_is_closer=True)
    # FAR 0.1 of 10: at most 1 negative strictly above -> the 2nd largest, 0.9
    assert cal[0.1] == {"threshold": 0.9, "far_reached": 0.1, "negatives": 10}
    assert cal[0.2]["threshold"] == 0.8 and cal[0.2]["far_reached"] == 0.2
    assert cal[0.01]["threshold"] == 0.95 and cal[0.01]["far_reached"] == 0.0  # unresolvable: the max
    dist = verification.calibrate(neg, (0.1,), higher_is_closer=False)  # distances mirror it
    assert dist[0.1]["threshold"] == 0.2
    # negatives only from different identities, NaN dropped
    s = np.array([[1, .9, .1, np.nan], [.9, 1, .2, .3], [.1, .2, 1, .4], [np.nan, .3, .4, 1]])
    got = verification.negative_scores(s, ["a", "a", "b", "c"])
    assert sorted(got.tolist()) == [0.1, 0.2, 0.3, 0.4]


def test_dodging_psr_margins_hand_computed():
    thr = 0.5
    before = [0.9, 0.8, 0.4, 0.7, 0.6]          # pair 2 was not matched before: not counted
    after = [0.3, 0.6, 0.1, np.nan, 0.45]       # successes: pair 0 (0.3), pair 3 (no face), pair 4 (0.45)
    r = verification.dodging(before, after, thr, higher_is_closer=True)
    assert r["matched_before"] == 4 and r["successes"] == 3 and r["no_face_after"] == 1
    assert r["psr"] == pytest.approx(0.75)
    np.testing.assert_allclose(r["margins"], [0.2, -0.1, np.nan, 0.05])
    assert r["margin"]["n"] == 3 and r["margin"]["q50"] == pytest.approx(0.05)
    # distances: match when below the threshold
    r = verification.dodging([0.3, 0.2, 0.9], [0.7, 0.4, 0.1], 0.6, higher_is_closer=False)
    assert (r["matched_before"], r["successes"], r["psr"]) == (2, 1, 0.5)
    np.testing.assert_allclose(r["margins"], [0.1, -0.2])


def test_impersonation_psr_hand_computed():
    r = verification.impersonation([0.1, 0.2, 0.6, 0.0], [0.7, 0.3, 0.9, np.nan], 0.5, higher_is_closer=True)
    assert r["pairs"] == 4 and r["successes"] == 2 and r["psr"] == 0.5 and r["no_face_after"] == 1
    assert r["matched_before_rate"] == 0.25
    np.testing.assert_allclose(r["margins"], [0.2, -0.2, 0.4, np.nan])


# ---------------------------------------------------------------- identification on a toy gallery
def test_rank_identities_and_rates_hand_computed():
    gallery_ids = ["ann", "ann", "bob", "cat", "dan"]
    # probe 0: best per identity ann .9 (its 2nd photo), bob .5, cat .8, dan .1 -> ann, cat, bob, dan
    r0 = identification.rank_identities([0.2, 0.9, 0.5, 0.8, 0.1], gallery_ids, True)
    assert r0 == ["ann", "cat", "bob", "dan"]
    # probe 1 (distances): dan .1 < bob .3 < ann .4 < cat .9; a NaN photo never ranks
    r1 = identification.rank_identities([0.4, np.nan, 0.3, 0.9, 0.1], gallery_ids, False)
    assert r1 == ["dan", "bob", "ann", "cat"]
    r2 = identification.rank_identities([np.nan] * 5, gallery_ids, True)  # no face
    assert r2 == []
    rates = identification.identification_rates([r0, r1, r2], ["ann", "ann", "bob"], ["cat", "dan", "cat"],
                                                ks=(1, 2), gallery_identities=gallery_ids)
    assert rates["ranks"] == [1, 3, None]
    # untargeted success = true id not in top k: k=1 -> probes 1, 2; k=2 -> probes 1, 2
    assert rates["untargeted"] == {1: pytest.approx(2 / 3), 2: pytest.approx(2 / 3)}
    # targeted: target ranks 2 (cat for r0), 1 (dan for r1), None -> k=1: 1/3, k=2: 2/3
    assert rates["target_ranks"] == [2, 1, None]
    assert rates["targeted"] == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}
    # a probe whose identity is absent from the gallery is not counted for untargeted rates
    rates = identification.identification_rates([r0, r1], ["ann", "zed"], None, ks=(1,), gallery_identities=gallery_ids)
    assert rates["probes_in_gallery"] == 1 and rates["untargeted"][1] == 0.0 and rates["targeted"] is None
