"""NDJSON drops in a watched folder: complete once the manifest and every file it names are there."""

from __future__ import annotations

import json
from pathlib import Path

from rescue_pipeline.extract.drops import find_drops


def write_drop(
    folder: Path,
    files: dict[str, bytes],
    *,
    manifest: bool = True,
    when: str = "2026-11-24T02:00:00Z",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    if manifest:
        outputs = [{"type": n.split(".")[0], "url": n} for n in files]
        (folder / "manifest.json").write_text(
            json.dumps({"transactionTime": when, "output": outputs})
        )
    return folder


def test_each_subfolder_with_a_manifest_is_a_drop(tmp_path: Path) -> None:
    write_drop(tmp_path / "2026-11-24", {"Patient.ndjson": b"{}\n"})
    write_drop(tmp_path / "2026-11-25", {"Patient.ndjson": b"{}\n"})
    write_drop(tmp_path / "notes", {"README.ndjson": b""}, manifest=False)
    drops = find_drops(tmp_path)
    assert [d.name for d in drops] == ["2026-11-24", "2026-11-25"]
    assert all(d.complete for d in drops)
    assert drops[0].key.startswith("2026-11-24@")


def test_the_watched_folder_itself_is_a_drop_when_it_has_a_manifest(tmp_path: Path) -> None:
    write_drop(tmp_path, {"Patient.ndjson": b"{}\n"})
    (drop,) = find_drops(tmp_path)
    assert (drop.name, drop.folder) == (".", tmp_path)


def test_a_drop_whose_files_are_still_arriving_is_not_complete(tmp_path: Path) -> None:
    folder = write_drop(tmp_path / "d1", {"Patient.ndjson": b"{}\n", "Observation.ndjson": b"{}\n"})
    (folder / "Observation.ndjson").unlink()
    (drop,) = find_drops(tmp_path)
    assert not drop.complete and drop.missing == ("Observation.ndjson",)
    (folder / "manifest.json").write_text('{"output": [')  # being written
    (drop,) = find_drops(tmp_path)
    assert drop.unreadable and not drop.complete


def test_a_redelivered_manifest_is_a_new_drop_the_same_one_is_not(tmp_path: Path) -> None:
    write_drop(tmp_path / "d1", {"Patient.ndjson": b"{}\n"})
    first = find_drops(tmp_path)[0].key
    assert find_drops(tmp_path)[0].key == first
    write_drop(tmp_path / "d1", {"Patient.ndjson": b"{}\n"}, when="2026-11-25T02:00:00Z")
    assert find_drops(tmp_path)[0].key != first


def test_a_missing_watched_folder_has_no_drops(tmp_path: Path) -> None:
    assert find_drops(tmp_path / "nowhere") == []


def test_a_drop_waits_for_the_deletion_files_its_manifest_names(tmp_path: Path) -> None:
    folder = write_drop(tmp_path / "d1", {"Patient.ndjson": b"{}\n"})
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["deleted"] = [{"type": "Bundle", "url": "https://x.example/files/del-1.ndjson"}]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (drop,) = find_drops(tmp_path)
    assert not drop.complete and drop.missing == ("https://x.example/files/del-1.ndjson",)
    (folder / "deleted").mkdir()
    (folder / "deleted" / "del-1.ndjson").write_bytes(b"{}\n")
    (drop,) = find_drops(tmp_path)
    assert drop.complete
