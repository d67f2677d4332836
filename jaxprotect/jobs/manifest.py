"""The job manifest ``OUT/job.json``: the inputs (with content hashes), the settings, and every
photo's status. Written only by process 0, atomically (temporary file, fsync, rename).

A job folder belongs to one method with one set of settings: running into it with other
settings is refused (:class:`JobSettingsError` names each difference); settings that do not
change the result (the runner's ``ignored_settings``, e.g. the batch size) may differ. Each run
adds the photos it names that the job does not know yet, checks that the files it knows are
unchanged (size and modification time, else their sha256), and sets back to pending a photo
whose content changed, and, with ``overwrite``, every photo it names.

Photo entries: ``id``, ``name``, ``source`` ("file" | "dataset"), ``index`` (dataset record),
``sha256``, ``size``, ``mtime_ns``, ``stem`` (of its output files: fixed when the photo joins the
job), ``status`` ("pending" | "done" | "failed"), ``run`` (the last run that named it as an
input), and after it was tried ``reason``/``error_type`` or ``outputs``/``verdict``, ``seconds``
and ``history`` (one entry per attempt: run, process, status).
"""
from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import json
import os
from pathlib import Path

from jaxprotect.io.naming import write_json
from jaxprotect.jobs.inputs import Inputs, file_fingerprint

__all__ = ["MANIFEST_NAME", "FORMAT", "JobError", "JobSettingsError", "manifest_path", "load_manifest",
           "save_manifest", "differences", "check_settings", "update_manifest", "assign_stems"]

MANIFEST_NAME = "job.json"
FORMAT = "jaxprotect-job/1"


class JobError(ValueError):
    """A job folder that cannot be used as asked (one clear line)."""


class JobSettingsError(JobError):
    """Other settings than the job folder's."""


def manifest_path(out_dir) -> Path:
    """``OUT/job.json``."""
    return Path(out_dir) / MANIFEST_NAME


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def load_manifest(out_dir) -> dict | None:
    """The manifest of job ``out_dir``, or None when the folder is not a job yet."""
    path = manifest_path(out_dir)
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise JobError(f"{path} is not a readable job manifest ({e}); move it away to start a new job there") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise JobError(f"{path} is not a jaxprotect job manifest (format {FORMAT})")
    return manifest


def save_manifest(out_dir, manifest: dict) -> Path:
    """Write the manifest atomically."""
    manifest["updated"] = _now()
    return write_json(manifest_path(out_dir), manifest)


def _flat(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out if out or not prefix else {prefix: {}}
    if isinstance(value, tuple):
        value = list(value)
    return {prefix: value}


def differences(old: dict, new: dict, ignore=()) -> list[str]:
    """``"key: old -> new"`` for every dotted key whose value differs between two settings
    dicts, except keys under any of ``ignore`` (dotted prefixes)."""
    a, b = _flat(json.loads(json.dumps(old))), _flat(json.loads(json.dumps(new)))
    skip = tuple(ignore)
    out = []
    for key in sorted(set(a) | set(b)):
        if any(key == p or key.startswith(p + ".") for p in skip):
            continue
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            out.append(f"{key}: {json.dumps(a.get(key, '<unset>'))} -> {json.dumps(b.get(key, '<unset>'))}")
    return out


def check_settings(manifest: dict, method: str, settings: dict, run_options: dict, ignore=()) -> None:
    """Raise :class:`JobSettingsError` when ``method``, ``settings`` or ``run_options`` differ from
    the job's (ignoring keys under ``ignore``), naming each difference."""
    diffs = []
    if manifest.get("method") != method:
        diffs.append(f"method: {manifest.get('method')} -> {method}")
    diffs += differences(manifest.get("run_options", {}), run_options)
    diffs += differences(manifest.get("settings", {}), settings, ignore)
    if diffs:
        shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
        raise JobSettingsError(f"the job in {manifest.get('_folder', 'the output folder')} was made with other "
                               f"settings ({shown}); use the same settings to continue it, or another output folder")


def _base_stem(label: str) -> str:
    return Path(label).stem or "photo"


def assign_stems(taken: set, labels: dict) -> dict:
    """{id: output stem} for new photos ``labels`` {id: file name}: the file's stem, with
    ``-<8 hex digits of sha256(id)>`` when another photo of the job or of ``labels`` has the same
    stem. Stems already ``taken`` never change."""
    counts: dict = {}
    for pid, label in labels.items():
        counts[_base_stem(label)] = counts.get(_base_stem(label), 0) + 1
    out = {}
    for pid, label in labels.items():
        stem = _base_stem(label)
        if stem in taken or counts[stem] > 1:
            stem = f"{stem}-{hashlib.sha256(pid.encode()).hexdigest()[:8]}"
        out[pid] = stem
    return out


def _fingerprints(paths: list[str]) -> dict:
    if not paths:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(paths))) as pool:
        return dict(zip(paths, pool.map(file_fingerprint, paths)))


def _unchanged(entry: dict, path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return entry.get("sha256") is None
    return entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns


def update_manifest(out_dir, manifest: dict | None, *, method: str, settings: dict, run_options: dict, ignore=(),
                    inputs: Inputs, overwrite: bool = False, processes: int = 1, execution: dict | None = None
                    ) -> tuple[dict, int, list[str]]:
    """The manifest for a new run into ``out_dir`` (not written): ``(manifest, run, notes)``.

    Checks the settings against an existing ``manifest`` (:func:`check_settings`), adds the
    photos of ``inputs`` it does not know, refreshes the ones it knows, and with ``overwrite``
    sets every photo of ``inputs`` back to pending. ``run`` is the new run's number; ``notes``
    say what changed (one line each).
    """
    notes: list[str] = []
    if manifest is None:
        manifest = {"format": FORMAT, "method": method, "settings": settings, "run_options": run_options,
                    "created": _now(), "runs": [], "sources": {}, "photos": []}
    else:
        manifest["_folder"] = os.fspath(out_dir)
        try:
            check_settings(manifest, method, settings, run_options, ignore)
        finally:
            manifest.pop("_folder", None)
    manifest["execution"] = execution or {}
    run = (manifest["runs"][-1]["run"] if manifest["runs"] else 0) + 1
    entries = {p["id"]: p for p in manifest["photos"]}
    taken = {p["stem"] for p in manifest["photos"]}
    changed = 0

    # Files: hash the new ones and the ones whose size or time changed.
    files = inputs.photos
    to_hash = [p.id for p in files if p.id not in entries or not _unchanged(entries[p.id], p.id)]
    prints = _fingerprints(to_hash)
    new_labels = {}
    for p in files:
        if p.id in entries:
            e = entries[p.id]
            e["name"] = p.name
            if p.id in prints:
                fp = prints[p.id]
                if fp["sha256"] != e.get("sha256") and e["status"] != "pending":
                    e["status"] = "pending"
                    changed += 1
                e.update({k: fp[k] for k in ("sha256", "size", "mtime_ns")})
        else:
            new_labels[p.id] = p.label
    stems = assign_stems(taken, new_labels)
    taken |= set(stems.values())
    for p in files:
        if p.id in new_labels:
            fp = prints[p.id]
            entry = {"id": p.id, "name": p.name, "source": "file",
                     **{k: fp[k] for k in ("sha256", "size", "mtime_ns")}, "stem": stems[p.id], "status": "pending"}
            entries[p.id] = entry
            manifest["photos"].append(entry)
    current = [p.id for p in files]

    # Dataset records: listed (one full read) only when the job does not know this dataset build.
    if inputs.dataset is not None:
        known = manifest["sources"].get(inputs.dataset["name"])
        if known and known.get("fingerprint") == inputs.dataset["fingerprint"] \
                and known.get("data_dir") == inputs.dataset["data_dir"]:
            ids = [p["id"] for p in manifest["photos"] if p["source"] == "dataset"
                   and p["id"].startswith(f"dataset:{inputs.dataset['name']}:")]
        else:
            records = inputs.dataset_photos()
            new_labels = {r.id: r.label for r in records if r.id not in entries}
            stems = assign_stems(taken, new_labels)
            taken |= set(stems.values())
            for r in records:
                if r.id in entries:
                    e = entries[r.id]
                    if e.get("sha256") != r.sha256 and e["status"] != "pending":
                        e["status"] = "pending"
                        changed += 1
                    e.update(sha256=r.sha256, index=r.index)
                else:
                    entry = {"id": r.id, "name": r.name, "source": "dataset", "index": r.index, "sha256": r.sha256,
                             "stem": stems[r.id], "status": "pending"}
                    entries[r.id] = entry
                    manifest["photos"].append(entry)
            ids = [r.id for r in records]
            manifest["sources"][inputs.dataset["name"]] = dict(inputs.dataset)
        current += ids
    if new_count := sum(1 for pid in current if "history" not in entries[pid] and entries[pid]["status"] == "pending"
                        and entries[pid].get("run") is None):
        notes.append(f"{new_count} new photos added to the job")
    if changed:
        notes.append(f"{changed} photos changed since they were protected: they are redone")
    redo = 0
    for pid in current:
        e = entries[pid]
        e["run"] = run
        if overwrite and e["status"] == "done":
            e["status"] = "pending"
            redo += 1
    if redo:
        notes.append(f"--overwrite: {redo} photos already done are redone")
    manifest["runs"].append({"run": run, "processes": processes, "started": _now(), "overwrite": bool(overwrite)})
    return manifest, run, notes
