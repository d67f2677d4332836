"""FaceCloak (zacharyyahn/FaceCloak @ 7f6e5f1): a personal cloak learnt once from one photo, added to every photo.

One identity-specific perturbation (a 112x112 mask, four region stickers and a high-pass part) is
learnt from a single photo of the person plus a synthetic set of images of them, then added to any
other photo of that person with no optimisation per photo.

Modules (one job each):

* :mod:`.config` — :class:`~.config.FaceCloakConfig` (frozen), the two modes and their units;
* :mod:`.preprocess` — largest MTCNN face, anisotropic resize of the whole photo, crop, ``divide``;
* :mod:`.losses` — triplet / fawkes / untarget on the code's cosine distance;
* :mod:`.optimise` — ``afog_cloak_multi`` (default), ``pgd_cloak_multi``, ``pgd_cloak``, ``afog_cloak``;
* :mod:`.stickers`, :mod:`.highpass` — region stickers and the high-pass mask;
* :mod:`.anchors` — near (top-1 gallery match) and far (``get_farthest`` or the code's fixed file);
* :mod:`.apply` — the cloak added at the box corner with the int16 truncation (or corrected);
* the code's top-n identification score is :mod:`jaxprotect.eval.topn` (an evaluation protocol);
* :mod:`.synthetic` — the image set besides the probe (folder, real photos, built-in augmentation);
* :mod:`.run` — the photo driver: ``learn_cloak`` / ``learn_cloaks`` / ``apply_cloak`` / cloak files.

``faithful`` reproduces the released code, bugs included (tested against goldens recorded from it):

1. the mask is optimised with ε = 8/255 in [-1, 1] units (4 grey levels) but applied ×255 (8 levels);
   stickers likewise (±16 modelled, ±32 applied); the high-pass part is added with no scale at all
   (≤ 0.125 levels, so after the int16 truncation it only subtracts 1 where it is negative);
2. stickers and the high-pass part are read out of ``attn·pert`` after each update and never enter
   the loss; the final clip to ±ε is not in the loop (``attn·pert`` is far outside ±ε after the
   first attention update);
3. the far anchor is one fixed gallery image for every user (the code overwrites ``get_farthest``
   with a hard-coded file);
4. the applied photo is truncated to int16 first (and the code evaluates the resized photo).

``corrected`` changes exactly these: budgets are read as grey levels (ε 8 levels = 16/255 in
[-1, 1] units) and everything is applied ×127.5, so the applied perturbation is the optimised one;
the loss sees ``clip(crop + clip(n, ±ε) + clip(Σ stickers(n), ±σ_s) + filter·clip(n, ±σ_h), -1, 1)``
(``n = attn·pert``; straight-through clips so gradients survive), i.e. stickers and high-pass part
shape the learning as the paper describes; the far anchor is the gallery face farthest from the
user; the applied photo is rounded, not truncated. Consequence to know: with the code's own budgets
(stickers 32, high-pass 32 levels) the corrected high-pass part really is applied (up to 32 levels on
about half of the face's pixels), so corrected cloaks are much more visible than faithful ones; the
budgets are settings (``sticker_levels``, ``highpass_levels``).

Kept from the code in both modes: the ``divide`` normalisation, the attention update
``attn ← attn - 10·(∇ - mean)/(unbiased std + 0.01)``, the sign step, 10 epochs × images with one
sequential update per image (a ``lax.scan``), the probe last, the sticker boxes and fallback points,
the Gaussian 23/σ 3 reflect-padded high-pass filter. Every random draw is an input or comes from a
``jax.random`` key. Where the code would crash (mouth corners in the wrong order; a face less than
112 px from the resized photo's right or bottom edge), the port goes on (empty mouth sticker;
padded region) — documented where it happens.
"""
