"""``jaxprotect faces``: boxes and scores, aligned crops, the bad-input corpus, exit status."""
from __future__ import annotations

import argparse
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from jaxprotect.commands import faces
from jaxprotect.io import read_photo
from helpers.photo_corpus import astronaut, make_bad_corpus


def run_faces(argv) -> int:
    parser = argparse.ArgumentParser()
    faces.add_arguments(parser)
    return faces.run(parser.parse_args([str(a) for a in argv]))


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, make_bad_corpus(folder, astronaut())


def test_bad_corpus_named_errors_nothing_written_inputs_untouched(corpus, tmp_path, capsys):
    folder, expected = corpus
    before = digests(folder)
    crops = tmp_path / "crops"
    names = sorted(expected)
    status = run_faces([*(folder / n for n in names), "--crops-dir", crops, "--json"])
    out, err = capsys.readouterr()
    assert status == 1
    records = {json.loads(line)["path"].rsplit("/", 1)[-1]: json.loads(line) for line in out.splitlines()}
    assert sorted(records) == names
    for name, outcome in expected.items():
        record = records[name]
        if outcome == "face":
            assert len(record["faces"]) == 1, name
            assert record["faces"][0]["prob"] > 0.99
            assert len(record["faces"][0]["landmarks"]) == 5
        else:
            assert record["error_type"] == outcome, (name, record)
            assert f"FAILED {folder / name}: [{outcome}]" in err
    assert f"{len(names)} photo(s): 4 ok, 6 failed" in err
    written = sorted(p.name for p in crops.iterdir())
    assert written == sorted(f"{n.rsplit('.', 1)[0]}_face0_112.png" for n, o in expected.items() if o == "face")
    for name in written:
        assert read_photo(crops / name).shape == (112, 112, 3)
    assert digests(folder) == before  # inputs never touched, nothing added next to them


def test_converted_inputs_give_the_same_face(corpus, capsys):
    folder, _ = corpus
    run_faces([folder / "good.jpg", folder / "cmyk.jpg", folder / "deep16.png", "--json"])
    boxes = [np.array(json.loads(line)["faces"][0]["box"]) for line in capsys.readouterr().out.splitlines()]
    for other in boxes[1:]:
        assert np.abs(other - boxes[0]).max() < 6  # same face despite JPEG/colour-conversion differences


@pytest.mark.parametrize("align, size", [("160", (160, 160)), ("box", None)])
def test_crop_kinds(corpus, tmp_path, capsys, align, size):
    folder, _ = corpus
    assert run_faces([folder / "good.jpg", "--crops-dir", tmp_path, "--align", align]) == 0
    text = capsys.readouterr().out
    assert "1 face(s) in 512x512" in text
    assert float(text.split("prob ")[1].split(" ")[0]) > 0.99
    crop = read_photo(tmp_path / f"good_face0_{align}.png")
    if size is None:  # the MTCNN box, as CLIP2Protect slices it
        box = [float(v) for v in text.split("box ")[1].split(" ")[0].split(",")]
        size = (round(box[3]) - round(box[1]), round(box[2]) - round(box[0]))
    assert crop.shape[:2] == size


def test_same_file_names_in_two_folders_get_distinct_crops(tmp_path, capsys):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.fromarray(astronaut()).save(tmp_path / sub / "me.png")
    assert run_faces([tmp_path / "a" / "me.png", tmp_path / "b" / "me.png", "--crops-dir", tmp_path / "c"]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["me_0_face0_112.png", "me_1_face0_112.png"]


def test_a_crop_never_overwrites_an_input(tmp_path, capsys):
    """The crop of good.png would be named good_face0_112.png, which is another input here: refused."""
    Image.fromarray(astronaut()).save(tmp_path / "good.png")
    victim = tmp_path / "good_face0_112.png"
    Image.fromarray(astronaut()[:, ::-1].copy()).save(victim)  # mirrored: another photo, a face
    before = hashlib.sha256(victim.read_bytes()).hexdigest()
    status = run_faces([tmp_path / "good.png", victim, "--crops-dir", tmp_path])
    assert status == 1
    assert f"FAILED {tmp_path / 'good.png'}: [OutputIsInputError]" in capsys.readouterr().err
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == before
    assert (tmp_path / "good_face0_112_face0_112.png").exists()  # the other photo still got its crop
