"""Test helpers: golden data and the golden tolerance table (:mod:`golden`), our outputs on every
golden (:mod:`parity`), the golden weight rule (:mod:`weight_rule`), small networks and inputs for
CLIP2Protect (:mod:`c2p_small`), CLIP (:mod:`clip_helpers`) and StyleGAN2 (:mod:`stylegan2_helpers`,
:mod:`stylegan2_gradcheck`), tiny recognisers (:mod:`tiny_recogniser`) and generated photos
(:mod:`photo_corpus`)."""
