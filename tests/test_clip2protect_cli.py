"""``jaxprotect protect --method clip2protect``: options, checkpoint lookup and messages, and (slow)
one end-to-end run on real photos with rule-weight networks (StyleGAN2 at 256)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from jaxprotect.cli import build_parser, main
from jaxprotect.commands import protect_clip2protect as c2p


def _args(*extra):
    return build_parser().parse_args(["protect", "--method", "clip2protect", "a.jpg", "-o", "out", *extra])


def test_options_and_defaults_follow_upstream():
    cfg = c2p._config(_args("--target", "t.jpg"))
    assert (cfg.steps, cfg.finetune_steps, cfg.lr, cfg.finetune_lr) == (50, 150, 0.01, 5e-4)
    assert (cfg.prompt, cfg.source_text, cfg.victim, cfg.impersonate) == ("red lipstick", "face", "mobileface", True)
    assert (cfg.final_image, cfg.clip_preprocess, cfg.sequential_generator) == ("pre_update", "faithful", False)
    cfg = c2p._config(_args("--target", "t.jpg", "--steps", "7", "--prompt", "tanned makeup", "--dodge",
                            "--sequential-generator", "--final-image", "post_update", "--victim", "ir152"))
    assert (cfg.steps, cfg.prompt, cfg.impersonate, cfg.sequential_generator) == (7, "tanned makeup", False, True)
    assert cfg.final_image == "post_update" and cfg.surrogates == ("facenet", "irse50", "mobileface")


def test_every_missing_checkpoint_is_named_with_its_source(tmp_path, capsys):
    rc = main(["protect", "--method", "clip2protect", "a.jpg", "-o", str(tmp_path / "out"), "--target", "t.jpg",
               "--weights-dir", str(tmp_path / "none")])
    out = capsys.readouterr().out
    assert rc == 2
    for kind, name in c2p._UPSTREAM_FILE.items():
        assert f"  {kind}: " in out and name in out
    assert "Google Drive id 1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT" in out  # from ported_weights/manifest.toml
    assert f"jaxprotect convert stylegan2 stylegan2-ffhq-config-f.pt {tmp_path / 'none' / 'stylegan2.npz'}" in out
    assert not (tmp_path / "out").exists()


def test_target_is_required(tmp_path, capsys):
    assert main(["protect", "--method", "clip2protect", "a.jpg", "-o", str(tmp_path)]) == 2
    assert "--target" in capsys.readouterr().out


def test_checkpoint_config_file_and_weights_dir(tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    for kind in c2p.CHECKPOINT_KINDS:
        (folder / f"{kind}.npz").write_bytes(b"x")
    (tmp_path / "g.pt").write_bytes(b"x")
    cfg = tmp_path / "ckpt.toml"
    cfg.write_text('[checkpoints]\nstylegan2 = "g.pt"\n')
    found, missing = c2p.resolve_checkpoints(_args("--checkpoints", str(cfg), "--weights-dir", str(folder)))
    assert not missing and found["stylegan2"] == str(tmp_path / "g.pt")  # relative to the config file
    assert found["clip"] == str(folder / "clip.npz")
    cfg.write_text('{"stylegan2": "missing.pt"}')
    json_cfg = tmp_path / "ckpt.json"
    json_cfg.write_text(json.dumps({"stylegan2": "missing.pt"}))
    _, missing = c2p.resolve_checkpoints(_args("--checkpoints", str(json_cfg), "--weights-dir", str(folder)))
    assert len(missing) == 1 and "missing.pt" in missing[0] and "does not exist" in missing[0]
    json_cfg.write_text(json.dumps({"stylegan": "x"}))
    with pytest.raises(ValueError, match="unknown checkpoint kinds"):
        c2p.resolve_checkpoints(_args("--checkpoints", str(json_cfg)))


def test_photo_key_does_not_depend_on_folder_or_batch():
    assert c2p.photo_id("/a/b/face.jpg") == c2p.photo_id("face.jpg") != c2p.photo_id("face2.jpg")


@pytest.mark.slow
def test_end_to_end_on_real_photos(tmp_path):
    from conftest import asset_path
    from PIL import Image

    from c2p_small import fullsize_checkpoints

    src = asset_path("faces/ffhq_sample/input_img.jpg")
    target = asset_path("faces/celebahq_target2/085807.jpg")
    target_eval = asset_path("faces/celebahq_target2/047073.jpg")
    weights = fullsize_checkpoints(tmp_path / "weights", size=256)
    photos = tmp_path / "in"
    photos.mkdir()
    img = Image.open(src).convert("RGB")
    img.resize((256, 256), Image.Resampling.BILINEAR).save(photos / "aligned.png")  # used as is
    img.crop((0, 60, 1024, 964)).resize((400, 356)).save(photos / "loose.jpg")  # aligned + pasted back
    (photos / "noface.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    rc = main(["protect", "--method", "clip2protect", str(photos / "aligned.png"), str(photos / "loose.jpg"),
               str(photos / "noface.png"), "-o", str(out), "--target", str(target), "--target-eval", str(target_eval),
               "--weights-dir", str(weights), "--finetune-steps", "1", "--steps", "2", "--batch-size", "2",
               "--no-progress", "--seed", "3"])
    assert rc == 1  # the non-image fails, the others are protected
    for stem, shape in (("aligned", (256, 256, 3)), ("loose", (356, 400, 3))):
        report = json.loads((out / f"{stem}_clip2protect.json").read_text())
        photo = np.asarray(Image.open(out / f"{stem}_clip2protect.png"))
        assert photo.shape == shape
        assert np.asarray(Image.open(out / f"{stem}_clip2protect_side_by_side.png")).shape == (256, 256 * 2 + 8, 3)
        assert report["seed"] == 3 and report["settings"]["steps"] == 2
        assert len(report["loss_curve"]["loss"]) == 2 and len(report["finetune_loss_curve"]) == 1
        assert set(report["similarity_to_target"]) == {"ir152", "irse50", "facenet", "mobileface"}
        v = report["victim"]
        assert v["model"] == "mobileface" and v["threshold"] == 0.301611 and v["match"] == (v["similarity"] > 0.301611)
        assert report["alignment"]["aligned_here"] == (stem == "loose")
    assert not os.path.exists(out / "noface_clip2protect.png")
