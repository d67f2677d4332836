"""jaxprotect.datasets builders on small generated folders and archives: counts, labels, exact bytes."""
from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers.golden import asset_path
from PIL import Image

from jaxprotect import datasets
from jaxprotect.io import TruncatedPhotoError, read_photo

REPO = Path(__file__).resolve().parent.parent


def photo_bytes(seed: int, fmt: str = "PNG", size: tuple[int, int] = (24, 20)) -> bytes:
    """A small, distinct encoded photo (``size`` = (width, height))."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def photos_dir(tmp_path) -> Path:
    d = tmp_path / "photos"
    write(d / "b.png", photo_bytes(1))
    write(d / "a.jpg", photo_bytes(2, "JPEG") + b"\x00\x00")  # trailing NULs must survive
    write(d / "c.WEBP", photo_bytes(3, "WEBP"))
    write(d / "sub" / "d.JPG", photo_bytes(4, "JPEG"))
    write(d / "._a.jpg", b"\x00\x05\x16\x07 AppleDouble")  # macOS resource fork: not a photo
    write(d / "notes.txt", b"not a photo")
    return d


def test_photo_folder_roundtrip(photos_dir, tmp_path):
    before = tree_digest(photos_dir)
    datasets.build("photo_folder", manual_dir=photos_dir, data_dir=tmp_path / "data")
    records = datasets.load("photo_folder", data_dir=tmp_path / "data")
    assert len(records) == 3
    assert [r["path"] for r in records.__getitems__(range(3))] == ["a.jpg", "b.png", "c.WEBP"]
    for i in range(3):
        r = records[i]
        data = (photos_dir / r["path"]).read_bytes()
        assert r["image"] == data
        assert r["sha256"] == hashlib.sha256(data).hexdigest() and r["size_bytes"] == len(data)
        np.testing.assert_array_equal(datasets.decode_image(r), read_photo(photos_dir / r["path"]))
    source = records.metadata["source"]
    assert source["skipped"] == ["._a.jpg", "notes.txt", "sub/"]
    assert source["count"] == 3 and source["manual_dir"] == os.path.realpath(photos_dir)
    assert tree_digest(photos_dir) == before


def test_photo_folder_recursive_reuse_and_source_change(photos_dir, tmp_path):
    data_dir = tmp_path / "data"
    b = datasets.build("photo_folder", manual_dir=photos_dir, data_dir=data_dir, recursive=True)
    records = datasets.load("photo_folder", data_dir=data_dir)
    assert [records[i]["path"] for i in range(len(records))] == ["a.jpg", "b.png", "c.WEBP", "sub/d.JPG"]
    shard = next(Path(b.data_path).glob("*.array_record*"))
    written = shard.stat().st_mtime_ns
    datasets.build("photo_folder", manual_dir=photos_dir, data_dir=data_dir, recursive=True)  # same files: reused
    assert shard.stat().st_mtime_ns == written
    with pytest.raises(datasets.SourceChangedError, match="options"):
        datasets.build("photo_folder", manual_dir=photos_dir, data_dir=data_dir)  # recursive=False now
    write(photos_dir / "e.png", photo_bytes(5))
    with pytest.raises(datasets.SourceChangedError, match="count: 4 -> 5"):
        datasets.build("photo_folder", manual_dir=photos_dir, data_dir=data_dir, recursive=True)
    before = tree_digest(photos_dir)
    datasets.build("photo_folder", manual_dir=photos_dir, data_dir=data_dir, recursive=True, overwrite=True)
    assert len(datasets.load("photo_folder", data_dir=data_dir)) == 5
    assert tree_digest(photos_dir) == before


def test_bad_photo_is_built_and_fails_only_when_decoded(tmp_path):
    folder = tmp_path / "photos"
    good = photo_bytes(7, "JPEG", size=(64, 48))
    write(folder / "good.jpg", good)
    write(folder / "broken.jpg", good[: len(good) // 2])
    datasets.build("photo_folder", manual_dir=folder, data_dir=tmp_path / "data")
    records = datasets.load("photo_folder", data_dir=tmp_path / "data")
    assert [r["path"] for r in records.__getitems__([0, 1])] == ["broken.jpg", "good.jpg"]
    with pytest.raises(TruncatedPhotoError, match="broken.jpg") as from_record:
        datasets.decode_image(records[0])
    with pytest.raises(TruncatedPhotoError) as from_file:
        read_photo(folder / "broken.jpg")
    assert from_record.value.reason == from_file.value.reason
    assert datasets.decode_image(records[1]).shape == (48, 64, 3)


def test_photo_folder_real_photos(tmp_path):
    folder = asset_path("faces/deepface")
    datasets.build("photo_folder", manual_dir=folder, data_dir=tmp_path / "data")
    records = datasets.load("photo_folder", data_dir=tmp_path / "data")
    files = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    assert len(records) == len(files) > 50
    for i, r in enumerate(records.__getitems__(range(len(records)))):
        assert r["path"] == files[i] and r["image"] == (folder / files[i]).read_bytes()
    for i in np.linspace(0, len(records) - 1, 4).astype(int):
        np.testing.assert_array_equal(datasets.decode_image(records[i]), read_photo(folder / files[i]))
    assert records.metadata["source"]["skipped"] == sorted(
        p.name for p in folder.iterdir() if p.is_file() and p.name not in files)


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(datasets.ManualDirError, match="no such folder"):
        datasets.build("photo_folder", manual_dir=tmp_path / "missing", data_dir=tmp_path / "data")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    write(tmp_path / "empty" / "sub" / "x.png", photo_bytes(0))
    with pytest.raises(datasets.ManualDirError, match="recursive=True"):
        datasets.build("photo_folder", manual_dir=tmp_path / "empty", data_dir=tmp_path / "data")
    with pytest.raises(TypeError, match="recursive"):
        datasets.build("photo_folder", manual_dir=tmp_path / "empty", data_dir=tmp_path / "data", recurse=True)
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.build("celeba", manual_dir=tmp_path, data_dir=tmp_path / "data")
    with pytest.raises(datasets.NotBuiltError):
        datasets.load("lfw/pairs", data_dir=tmp_path / "data")
    inside = tmp_path / "data" / "photo_folder" / "1.0.0"
    write(inside / "x.png", photo_bytes(0))
    with pytest.raises(datasets.ManualDirError, match="inside the dataset folder"):
        datasets.build("photo_folder", manual_dir=inside, data_dir=tmp_path / "data")
    assert not list((tmp_path / "data").glob("**/*.array_record*"))


def test_identity_folder_labels(tmp_path):
    d = tmp_path / "gallery"
    for name, seed in [("bob_1.jpg", 1), ("alice_2.png", 2), ("alice_1.png", 3), ("carol_x_1.jpg", 4)]:
        write(d / name, photo_bytes(seed, "JPEG" if name.endswith("jpg") else "PNG"))
    datasets.build("identity_folder", manual_dir=d, data_dir=tmp_path / "data")
    records = datasets.load("identity_folder", data_dir=tmp_path / "data")
    got = [(r["path"], r["identity"], r["label"]) for r in records.__getitems__(range(len(records)))]
    assert got == [("alice_1.png", "alice", 0), ("alice_2.png", "alice", 0), ("bob_1.jpg", "bob", 1),
                   ("carol_x_1.jpg", "carol", 2)]
    assert records.metadata["source"]["identities"] == ["alice", "bob", "carol"]
    assert records[2]["image"] == (d / "bob_1.jpg").read_bytes()
    write(d / "dave.jpg", photo_bytes(5, "JPEG"))
    with pytest.raises(datasets.ManualDirError, match="dave.jpg"):
        datasets.build("identity_folder", manual_dir=d, data_dir=tmp_path / "data2")


def amtgan_targets_dir(folder: Path, choices=(1, 2, 3, 4), layout=("target", "test")) -> Path:
    for c in choices:
        t = datasets.AMTGAN_TARGETS[c]
        write(folder / layout[0] / t.target, photo_bytes(100 + c, "JPEG"))
        write(folder / layout[1] / t.eval, photo_bytes(200 + c, "JPEG"))
    return folder


def test_celebahq_amtgan_folder_needs_1000_and_targets(tmp_path):
    assets = tmp_path / "assets" / "datasets"
    names = [f"{i:06d}.jpg" for i in random.Random(0).sample(range(1, 202600), 1000)]
    tiny = [photo_bytes(i, size=(2, 2)) for i in range(1000)]
    for name, data in zip(names, tiny):
        write(assets / "CelebA-HQ" / name, data)
    amtgan_targets_dir(assets)
    data_dir = tmp_path / "data"
    datasets.build("celebahq_amtgan/images", manual_dir=assets, data_dir=data_dir)
    images = datasets.load("celebahq_amtgan/images", data_dir=data_dir, split="test")
    assert len(images) == 1000
    assert [images[i]["path"] for i in (0, 999)] == [min(names), max(names)]
    k = sorted(names).index(names[17])
    assert images[k]["image"] == tiny[17]

    datasets.build("celebahq_amtgan/targets", manual_dir=assets, data_dir=data_dir)
    targets = datasets.load("celebahq_amtgan/targets", data_dir=data_dir)
    assert len(targets) == 4
    for i, c in enumerate((1, 2, 3, 4)):
        r, t = targets[i], datasets.AMTGAN_TARGETS[c]
        assert r["choice"] == c
        assert (r["target_path"], r["eval_path"]) == (f"target/{t.target}", f"test/{t.eval}")
        assert r["target_image"] == (assets / "target" / t.target).read_bytes()
        assert r["eval_image"] == (assets / "test" / t.eval).read_bytes()
        assert r["target_crop"].tolist() == list(t.target_crop) and r["eval_crop"].tolist() == list(t.eval_crop)
    assert datasets.AMTGAN_TARGETS[2].target_crop == (187, 891, 244, 764)  # CLIP2Protect's default target

    (assets / "CelebA-HQ" / names[0]).unlink()
    with pytest.raises(datasets.ManualDirError, match="999 photos.*1000"):
        datasets.build("celebahq_amtgan/images", manual_dir=assets, data_dir=tmp_path / "data2")
    (assets / "test" / datasets.AMTGAN_TARGETS[3].eval).unlink()
    with pytest.raises(datasets.ManualDirError, match="055622.jpg.*choice 3"):
        datasets.build("celebahq_amtgan/targets", manual_dir=assets, data_dir=tmp_path / "data2")
    datasets.build("celebahq_amtgan/targets", manual_dir=assets, data_dir=tmp_path / "data2", targets=(4, 1))
    assert [r["choice"] for r in datasets.load("celebahq_amtgan/targets", data_dir=tmp_path / "data2")
            .__getitems__([0, 1])] == [4, 1]


def test_celebahq_amtgan_user_list(tmp_path):
    folder = tmp_path / "CelebA-HQ"
    for i in range(5):
        write(folder / f"{i:06d}.jpg", photo_bytes(i, "JPEG"))
    listing = write(tmp_path / "mine.txt", b"# my picks\n000003.jpg\n\n000001.jpg\n000004.jpg\n")
    datasets.build("celebahq_amtgan/images", manual_dir=tmp_path, data_dir=tmp_path / "data", image_list=listing)
    images = datasets.load("celebahq_amtgan/images", data_dir=tmp_path / "data")
    assert [images[i]["path"] for i in range(3)] == ["000003.jpg", "000001.jpg", "000004.jpg"]  # list order
    assert images[0]["image"] == (folder / "000003.jpg").read_bytes()
    write(tmp_path / "bad.txt", b"000003.jpg\n000009.jpg\n")
    with pytest.raises(datasets.ManualDirError, match="000009.jpg"):
        datasets.build("celebahq_amtgan/images", manual_dir=tmp_path, data_dir=tmp_path / "d2",
                       image_list=tmp_path / "bad.txt")


def test_diffam_split_matches_diffam_code(tmp_path):
    # CelebAMask-HQ-attribute-anno.txt: a count line, an attribute-name line, then "<n>.jpg <40 labels>".
    lines = ["30000", "5_o_Clock_Shadow Arched_Eyebrows"] + [f"{n}.jpg  1 -1" for n in range(30000)]
    attr = write(tmp_path / "CelebAMask-HQ-attribute-anno.txt", ("\n".join(lines) + "\n").encode())
    # DiffAM datasets/celeba_dataset.py MultiResolutionDataset.preprocess, mark != 0, literally:
    state = random.getstate()
    try:
        with open(attr) as f:
            expected = [line.rstrip() for line in f][2:]
        random.seed(1234)
        random.shuffle(expected)
        expected = [line.split()[0] for line in expected[15000:16000]]
    finally:
        random.setstate(state)
    names = datasets.diffam_test_names(attr)
    assert names == expected and len(set(names)) == 1000
    for name in names:
        write(tmp_path / "CelebA-HQ-img" / name, name.encode())  # content is never decoded while building
    datasets.build("celebahq_amtgan/images", manual_dir=tmp_path, data_dir=tmp_path / "data", image_list="diffam")
    images = datasets.load("celebahq_amtgan/images", data_dir=tmp_path / "data")
    assert len(images) == 1000 and images[5]["path"] == names[5] and images[5]["image"] == names[5].encode()


def test_ladn_folder_list_and_targets(tmp_path):
    ladn = tmp_path / "LADN"
    for i in range(4):
        write(ladn / f"before_{i}.png", photo_bytes(i))
    amtgan_targets_dir(ladn, choices=(2,), layout=("target_images", "test_images"))
    data_dir = tmp_path / "data"
    datasets.build("ladn/images", manual_dir=ladn, data_dir=data_dir)
    images = datasets.load("ladn/images", data_dir=data_dir)
    assert [images[i]["path"] for i in range(len(images))] == [f"before_{i}.png" for i in range(4)]
    datasets.build("ladn/targets", manual_dir=ladn, data_dir=data_dir, targets=(2,))
    (target,) = datasets.load("ladn/targets", data_dir=data_dir).__getitems__([0])
    assert target["target_path"] == "target_images/085807.jpg" and target["eval_path"] == "test_images/047073.jpg"
    write(tmp_path / "list.txt", b"before_2.png\n")
    datasets.build("ladn/images", manual_dir=ladn, data_dir=tmp_path / "d2", image_list=tmp_path / "list.txt")
    assert len(datasets.load("ladn/images", data_dir=tmp_path / "d2")) == 1


def test_real_amtgan_target_photos_round_trip(tmp_path):
    target = asset_path("faces/celebahq_target2/085807.jpg")
    evaluation = asset_path("faces/celebahq_target2/047073.jpg")
    folder = tmp_path / "assets"
    write(folder / "target" / target.name, target.read_bytes())
    write(folder / "test" / evaluation.name, evaluation.read_bytes())
    datasets.build("celebahq_amtgan/targets", manual_dir=folder, data_dir=tmp_path / "data", targets=(2,))
    r = datasets.load("celebahq_amtgan/targets", data_dir=tmp_path / "data")[0]
    assert r["target_image"] == target.read_bytes() and r["eval_image"] == evaluation.read_bytes()
    pixels = datasets.decode_image(r, field="target_image", name_field="target_path")
    assert pixels.shape == (1024, 1024, 3) and pixels.dtype == np.uint8
    y0, y1, x0, x1 = r["target_crop"]
    assert pixels[y0:y1, x0:x1].shape == (704, 520, 3)


LFW_PEOPLE = {"Ann_Lee": 3, "Bo_Li": 2, "Cy_Ng": 1, "Di_Ok": 2}
PAIRS_TXT = (
    "2\t2\n"
    "Ann_Lee\t1\t2\nBo_Li\t1\t2\nAnn_Lee\t1\tCy_Ng\t1\nBo_Li\t2\tDi_Ok\t1\n"
    "Ann_Lee\t2\t3\nDi_Ok\t1\t2\nCy_Ng\t1\tDi_Ok\t2\nAnn_Lee\t3\tBo_Li\t1\n"
)


def fake_lfw(folder: Path, top: str = "lfw") -> tuple[Path, dict[str, bytes]]:
    """``folder/lfw.tgz`` (plus a README member) and ``pairs.txt``; returns the archive and its photos."""
    photos, seed = {}, 0
    for person, count in LFW_PEOPLE.items():
        for n in range(1, count + 1):
            seed += 1
            photos[f"{person}/{person}_{n:04d}.jpg"] = photo_bytes(seed, "JPEG")
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "lfw.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for rel in sorted(photos, reverse=True):  # archive order differs from sorted order
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size = len(photos[rel])
            tar.addfile(info, io.BytesIO(photos[rel]))
        readme = tarfile.TarInfo(f"{top}/README")
        readme.size = 2
        tar.addfile(readme, io.BytesIO(b"hi"))
    (folder / "pairs.txt").write_text(PAIRS_TXT)
    return archive, photos


def test_lfw_images_pairs_and_tipim_from_archive(tmp_path):
    manual = tmp_path / "lfw_files"
    _, photos = fake_lfw(manual)
    data_dir = tmp_path / "data"
    for name in ("lfw/images", "lfw/pairs", "lfw/tipim"):
        datasets.build(name, manual_dir=manual, data_dir=data_dir, **({"tipim_count": 3} if "tipim" in name else {}))
    images = datasets.load("lfw/images", data_dir=data_dir)
    assert len(images) == 8
    all_images = images.__getitems__(range(8))
    assert [r["path"] for r in all_images] == sorted(photos)
    assert all(r["image"] == photos[r["path"]] for r in all_images)
    assert [r["label"] for r in all_images] == [0, 0, 0, 1, 1, 2, 3, 3]
    assert all_images[3]["identity"] == "Bo_Li"
    assert images.metadata["source"]["images"]["count"] == 8

    pairs = datasets.load("lfw/pairs", data_dir=data_dir)
    assert pairs.metadata["source"]["images"] == images.metadata["source"]["images"]
    got = pairs.__getitems__(range(len(pairs)))
    assert [(p["fold"], p["same"]) for p in got] == [(0, True), (0, True), (0, False), (0, False),
                                                     (1, True), (1, True), (1, False), (1, False)]
    assert [p["line"] for p in got] == list(range(2, 10))
    assert (got[2]["path1"], got[2]["path2"]) == ("Ann_Lee/Ann_Lee_0001.jpg", "Cy_Ng/Cy_Ng_0001.jpg")
    for p in got:
        assert images[p["index1"]]["path"] == p["path1"] and images[p["index2"]]["path"] == p["path2"]

    tipim = datasets.load("lfw/tipim", data_dir=data_dir, split="attackers")
    got = tipim.__getitems__(range(len(tipim)))
    # the first 3 same-person lines: fold 1's two, then fold 2's first; TIP-IM protects the id2 photo
    assert [(t["line"], t["path"], t["other_path"]) for t in got] == [
        (2, "Ann_Lee/Ann_Lee_0002.jpg", "Ann_Lee/Ann_Lee_0001.jpg"),
        (3, "Bo_Li/Bo_Li_0002.jpg", "Bo_Li/Bo_Li_0001.jpg"),
        (6, "Ann_Lee/Ann_Lee_0003.jpg", "Ann_Lee/Ann_Lee_0002.jpg"),
    ]
    assert all(images[t["index"]]["path"] == t["path"] for t in got)


def test_lfw_extracted_folder_equals_archive(tmp_path):
    archive, photos = fake_lfw(tmp_path / "a", top="lfw-deepfunneled")
    folder = tmp_path / "b"
    for rel, data in photos.items():
        write(folder / "lfw" / rel, data)
    (folder / "pairs.txt").write_text(PAIRS_TXT)
    datasets.build("lfw/images", manual_dir=tmp_path / "a", data_dir=tmp_path / "da")
    datasets.build("lfw/images", manual_dir=folder, data_dir=tmp_path / "db")
    a, b = (datasets.load("lfw/images", data_dir=tmp_path / d) for d in ("da", "db"))
    assert a.__getitems__(range(8)) == b.__getitems__(range(8))
    assert a.metadata["source"]["images"]["archive"] == os.path.realpath(archive)


def test_lfw_pairs_errors_name_the_line(tmp_path):
    manual = tmp_path / "m"
    fake_lfw(manual)
    (manual / "pairs.txt").write_text(PAIRS_TXT.replace("Bo_Li\t1\t2\n", "Bo_Li\t1\t7\n", 1))
    with pytest.raises(datasets.ManualDirError, match="line 3 names Bo_Li/Bo_Li_0007.jpg"):
        datasets.build("lfw/pairs", manual_dir=manual, data_dir=tmp_path / "data")
    with pytest.raises(datasets.ManualDirError, match="header announces 2 fold"):
        datasets.parse_pairs(PAIRS_TXT + "Ann_Lee\t1\t2\n")
    swapped = PAIRS_TXT.replace("Bo_Li\t1\t2\nAnn_Lee\t1\tCy_Ng\t1\n", "Ann_Lee\t1\tCy_Ng\t1\nBo_Li\t1\t2\n")
    with pytest.raises(datasets.ManualDirError, match="line 3: fold 1 expects a same-person"):
        datasets.parse_pairs(swapped)
    single = datasets.parse_pairs("1\nAnn_Lee\t1\t2\nBo_Li\t1\tCy_Ng\t1\n")
    assert [(p.fold, p.same, p.name2) for p in single] == [(0, True, "Ann_Lee"), (0, False, "Cy_Ng")]
    headerless = datasets.tipim_attackers("Ann_Lee\t1\t2\nBo_Li\t1\t2\n", count=500)
    assert [(p.line, p.num2) for p in headerless] == [(1, 2), (2, 2)]


def test_no_tensorflow_import_and_no_network(tmp_path, photos_dir):
    """In a fresh interpreter where `tensorflow` LOOKS installed but importing it fails loudly, and every
    socket connection fails: build, load, decode and iterate with grain; nothing tries either."""
    script = textwrap.dedent(f"""
        import importlib.abc, importlib.machinery, socket, sys
        imports, connects = [], []

        class Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return None
            def exec_module(self, module):
                imports.append(module.__name__)
                raise ImportError("importing " + module.__name__ + " is forbidden here")

        class PretendTensorFlow(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" or name.startswith("tensorflow."):
                    return importlib.machinery.ModuleSpec(name, Loader())

        def no_connect(self, *args, **kwargs):
            connects.append(args)
            raise OSError("network is forbidden here")

        sys.meta_path.insert(0, PretendTensorFlow())
        socket.socket.connect = no_connect
        from jaxprotect import datasets
        datasets.build("photo_folder", manual_dir={str(photos_dir)!r}, data_dir={str(tmp_path / "data")!r})
        records = datasets.load("photo_folder", data_dir={str(tmp_path / "data")!r})
        datasets.decode_image(records[0])
        batches = list(datasets.input_pipeline(records, batch_size=2, process_index=0, process_count=1))
        assert sum(len(b.indices) for b in batches) == 3
        assert "tensorflow" not in sys.modules, sorted(m for m in sys.modules if m.startswith("tensorflow."))
        print("IMPORTS", imports, "CONNECTS", connects)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "IMPORTS [] CONNECTS []" in out.stdout
