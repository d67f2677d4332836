"""ported_weights/manifest.toml: well-formed, shipped files present, recorded sha256 match the files we have."""
from __future__ import annotations

import re
import tomllib

from pathlib import Path

import pytest

from jaxprotect.registry import NETWORK_NAMES
from ported_weights import sha256_file
from helpers.golden import ASSETS

PORTED = Path(__file__).resolve().parent.parent / "ported_weights"


@pytest.fixture(scope="module")
def entries():
    with open(PORTED / "manifest.toml", "rb") as f:
        return tomllib.load(f)["checkpoint"]




def test_fields_and_uniqueness(entries):
    seen = set()
    for e in entries:
        for field in ("name", "kind", "source", "licence", "shipped"):
            assert field in e, f"{e.get('name')}: no {field}"
        assert e["kind"] in NETWORK_NAMES or e["kind"] == "dlib", e
        assert (e["kind"], e["name"]) not in seen, f"duplicate entry {e['kind']} {e['name']}"
        seen.add((e["kind"], e["name"]))
        if "sha256" in e:
            assert re.fullmatch(r"[0-9a-f]{64}", e["sha256"]), e["name"]


def test_shipped_files_exist(entries):
    for e in (e for e in entries if e["shipped"]):
        for field in ("converted", "converter", "notice"):
            assert field in e, f"{e['name']}: shipped without {field}"
            assert (PORTED / e[field]).exists(), f"{e['name']}: {e[field]} missing from ported_weights/"


def test_every_recogniser_is_listed(entries):
    kinds = {e["kind"] for e in entries}
    for name in ("ir152", "irse50", "facenet", "mobileface", "ir50", "mobilefacenet_foamliu", "facenet_casia"):
        assert name in kinds, name


def test_sha256_of_available_assets(entries):
    weights = ASSETS / "weights"
    if not weights.exists():
        pytest.skip(f"{weights} absent")
    recorded = {e["sha256"] for e in entries if "sha256" in e}
    for asset in ("mobilefacenet_foamliu.pt", "mtcnn_pnet.pt", "mtcnn_rnet.pt", "mtcnn_onet.pt"):
        assert sha256_file(weights / asset) in recorded, asset


def test_converted_sha256(entries):
    for e in (e for e in entries if e["shipped"] and "converted_sha256" in e):
        assert sha256_file(PORTED / e["converted"]) == e["converted_sha256"], e["converted"]
