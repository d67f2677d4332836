"""Photo reading (every awkward input), metadata-free atomic writing, and the batch runner."""
from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import pytest
from PIL import Image, ImageOps

from jaxprotect.io import (
    AnimatedImageError,
    BatchReport,
    CorruptPhotoError,
    NotAnImageError,
    OutputIsInputError,
    PhotoError,
    PhotoNotFoundError,
    PhotoTooLargeError,
    PhotoTooSmallError,
    PhotoWriteError,
    TruncatedPhotoError,
    UnsupportedFormatError,
    read_photo,
    run_batch,
    write_photo,
)
from helpers.photo_corpus import png_bytes, smooth, write_rgb16_png


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# --- reading: refusals ------------------------------------------------------------------------


def test_truncated_jpeg(tmp_path):
    Image.fromarray(smooth(200, 300)).save(tmp_path / "a.jpg", quality=95)
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(TruncatedPhotoError, match="cut.jpg.*truncated"):
        read_photo(tmp_path / "cut.jpg")


def test_truncated_png(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (100, 100, 3), np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptPhotoError, match="cut.png"):  # TruncatedPhotoError is a CorruptPhotoError
        read_photo(tmp_path / "cut.png")


def test_text_file_named_jpg(tmp_path):
    (tmp_path / "notes.jpg").write_text("not a photo\n")
    with pytest.raises(NotAnImageError, match="notes.jpg: not an image"):
        read_photo(tmp_path / "notes.jpg")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(PhotoNotFoundError, match="nope.jpg: no such file"):
        read_photo(tmp_path / "nope.jpg")
    with pytest.raises(FileNotFoundError):
        read_photo(tmp_path / "nope.jpg")
    with pytest.raises(PhotoNotFoundError, match="not a regular file"):
        read_photo(tmp_path)


@pytest.mark.parametrize("size", [(1, 1), (19, 300)])
def test_too_small(tmp_path, size):
    Image.new("RGB", size).save(tmp_path / "small.png")
    with pytest.raises(PhotoTooSmallError, match="too small"):
        read_photo(tmp_path / "small.png")


@pytest.mark.parametrize(
    "width, height, says",
    [
        (50000, 50000, "decompression bomb"),  # beyond Pillow's own limit: its error, reported as ours
        (10000, 6000, "header says 10000x6000"),  # 60 MP: under Pillow's limit, over ours
        (25000, 30, "20000 px a side"),
    ],
)
def test_header_claiming_a_huge_image_is_refused_before_decoding(tmp_path, width, height, says):
    # the IDAT holds almost nothing: decoding would fail as corrupt, so TooLarge proves the header check came first
    (tmp_path / "huge.png").write_bytes(png_bytes(width, height, 8, 2, b"\x00" * 64))
    with pytest.raises(PhotoTooLargeError, match=says):
        read_photo(tmp_path / "huge.png")


def test_lower_pillow_pixel_limit_is_respected(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with pytest.raises(PhotoTooLargeError, match="0.005 megapixels"):
        read_photo(tmp_path / "a.png")


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animations_are_refused(tmp_path, fmt):
    frames = [Image.fromarray(smooth()), Image.fromarray(smooth()[::-1].copy())]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(AnimatedImageError, match="2 frames"):
        read_photo(path)


def test_still_gif_is_read(tmp_path):
    Image.fromarray(smooth()).convert("P").save(tmp_path / "still.gif")
    assert read_photo(tmp_path / "still.gif").shape == (96, 128, 3)


def test_other_formats_are_refused(tmp_path):
    Image.fromarray(smooth()).save(tmp_path / "a.tiff")
    with pytest.raises(UnsupportedFormatError, match="TIFF"):
        read_photo(tmp_path / "a.tiff")


def test_every_refusal_is_a_photo_error():
    for cls in (AnimatedImageError, CorruptPhotoError, NotAnImageError, PhotoNotFoundError, PhotoTooLargeError,
                PhotoTooSmallError, TruncatedPhotoError, UnsupportedFormatError, OutputIsInputError, PhotoWriteError):
        assert issubclass(cls, PhotoError)


# --- reading: conversions ---------------------------------------------------------------------


def test_rgb_png_is_exact(tmp_path):
    pixels = np.random.default_rng(2).integers(0, 256, (40, 50, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    got = read_photo(tmp_path / "a.png")
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, pixels)


def test_grayscale_and_palette(tmp_path):
    gray = smooth()[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_photo(tmp_path / "g.png"), np.repeat(gray[..., None], 3, axis=2))
    pal = Image.fromarray(smooth()).convert("P", palette=Image.Palette.ADAPTIVE)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_photo(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    rgb = smooth(120, 160)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    got = read_photo(tmp_path / "c.jpg")
    assert got.shape == (120, 160, 3)
    assert np.abs(got.astype(int) - rgb).mean() < 3


def test_16_bit_png_gray_and_rgb(tmp_path):
    wide = (np.arange(30 * 40, dtype=np.uint32).reshape(30, 40) * 54).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    got = read_photo(tmp_path / "g16.png")
    want = np.rint(wide / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(got, np.repeat(want[..., None], 3, axis=2))
    rgb = smooth()
    write_rgb16_png(tmp_path / "rgb16.png", rgb)
    assert np.abs(read_photo(tmp_path / "rgb16.png").astype(int) - rgb).max() <= 1


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., :3] = (200, 10, 50)
    rgba[:10, :, 3] = 0  # transparent
    rgba[10:20, :, 3] = 255  # opaque
    rgba[20:, :, 3] = 128  # half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    got = read_photo(tmp_path / "a.png").astype(int)
    assert (got[:10] == 255).all()
    assert (got[10:20] == (200, 10, 50)).all()
    half = (np.array([200, 10, 50]) * 128 + 255 * 127) / 255
    assert np.abs(got[25, 5] - half).max() <= 1
    pal = Image.fromarray(rgba[..., :3]).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    pal.save(tmp_path / "t.png", transparency=pal.getpixel((0, 0)))  # palette transparency (tRNS)
    assert (read_photo(tmp_path / "t.png") == 255).all()


@pytest.mark.parametrize("orientation, undo", [(3, lambda a: np.rot90(a, 2)), (6, lambda a: np.rot90(a, -1)),
                                                (8, lambda a: np.rot90(a, 1))])
def test_exif_orientation_is_applied(tmp_path, orientation, undo):
    stored = np.zeros((60, 90, 3), np.uint8)
    stored[:20, :30] = 255  # a white block top-left in the stored pixels
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "o.png", exif=exif)
    got = read_photo(tmp_path / "o.png")
    np.testing.assert_array_equal(got, undo(stored))
    np.testing.assert_array_equal(got, np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png"))))


# --- writing ----------------------------------------------------------------------------------


def _gps_photo(path):
    """A JPEG carrying GPS coordinates, a camera make and an ICC profile."""
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    Image.fromarray(smooth(120, 160)).save(path, quality=95, exif=exif, icc_profile=b"not-a-real-profile" * 8)
    assert Image.open(path).getexif().get_ifd(0x8825)[1] == "N"


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_written_photo_carries_no_metadata(tmp_path, suffix):
    src = tmp_path / "gps.jpg"
    _gps_photo(src)
    out = write_photo(tmp_path / f"out{suffix}", read_photo(src))
    raw = out.read_bytes()
    for marker in (b"Exif", b"SpyCam", b"ICC_PROFILE", b"not-a-real-profile", b"eXIf", b"iCCP", b"XMP"):
        assert marker not in raw, marker
    back = Image.open(out)
    assert len(back.getexif()) == 0
    assert not {"exif", "icc_profile", "xmp"} & set(back.info)


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_lossless_outputs_round_trip(tmp_path, suffix):
    pixels = np.random.default_rng(3).integers(0, 256, (33, 47, 3), np.uint8)
    np.testing.assert_array_equal(read_photo(write_photo(tmp_path / f"x{suffix}", pixels)), pixels)


def test_float_images_are_rounded(tmp_path):
    pixels = np.full((25, 25, 3), 99.6, np.float32)
    pixels[0, 0] = 300.0
    got = read_photo(write_photo(tmp_path / "f.png", pixels))
    assert got[1, 1, 0] == 100 and got[0, 0, 0] == 255


def test_never_overwrites_an_input(tmp_path):
    src = tmp_path / "in.jpg"
    _gps_photo(src)
    before = sha(src)
    pixels = read_photo(src)
    with pytest.raises(OutputIsInputError, match="in.jpg"):
        write_photo(src, pixels)  # read in this process: protected without being named
    (tmp_path / "link.jpg").symlink_to(src)
    with pytest.raises(OutputIsInputError):
        write_photo(tmp_path / "link.jpg", pixels)
    os.link(src, tmp_path / "hard.jpg")
    with pytest.raises(OutputIsInputError):
        write_photo(tmp_path / "hard.jpg", pixels)
    other = tmp_path / "other.png"
    Image.fromarray(pixels).save(other)
    with pytest.raises(OutputIsInputError):
        write_photo(tmp_path / "sub" / ".." / "other.png", pixels, inputs=[other])
    assert sha(src) == before


def test_write_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "out.png"
    write_photo(out, smooth())
    before = sha(out)
    assert (os.stat(out).st_mode & 0o777) != 0o600  # usual permissions, not mkstemp's

    def broken_save(self, fp, format=None, **kw):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(PhotoWriteError, match="disk full"):
        write_photo(out, smooth()[::-1])
    assert sha(out) == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary left behind


def test_unknown_extension_and_bad_shape(tmp_path):
    with pytest.raises(PhotoWriteError, match="extension"):
        write_photo(tmp_path / "x.gif", smooth())
    with pytest.raises(PhotoWriteError, match="RGB"):
        write_photo(tmp_path / "x.png", smooth()[..., 0])
    assert list(tmp_path.iterdir()) == []


# --- batch ------------------------------------------------------------------------------------


def test_batch_goes_on_past_failures_and_reports(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(smooth()).save(good)
    (tmp_path / "bad.jpg").write_text("nope")
    out = tmp_path / "out"

    def step(path):
        if "boom" in path:
            raise RuntimeError("unexpected bug")
        pixels = read_photo(path)
        return write_photo(out / (os.path.basename(path) + ".png"), pixels)

    stream = io.StringIO()
    report = run_batch([tmp_path / "bad.jpg", good, tmp_path / "boom.png", tmp_path / "gone.jpg"], step, stream=stream)
    assert isinstance(report, BatchReport)
    assert [i.ok for i in report.items] == [False, True, False, False]
    assert [i.error_type for i in report.failed] == ["NotAnImageError", "RuntimeError", "PhotoNotFoundError"]
    assert report.exit_code == 1
    text = stream.getvalue()
    assert "4 photo(s): 1 ok, 3 failed" in text and "unexpected bug" in text
    assert sorted(p.name for p in out.iterdir()) == ["good.png.png"]  # nothing written for failures
    assert report.as_dict()["failed"][0]["path"].endswith("bad.jpg")


def test_batch_all_ok_exits_zero():
    report = run_batch(["a", "b"], lambda p: p.upper(), quiet=True)
    assert report.exit_code == 0 and [i.value for i in report.items] == ["A", "B"]
