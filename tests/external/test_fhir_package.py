"""The package converter on hand-made packages: what it writes, what it skips and why, and that
a hostile tarball cannot make it read outside the folder asked for."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import orjson
import pytest

from rescue_pipeline.config import load_config
from rescue_pipeline.extract.fhir_package import convert_package
from rescue_pipeline.site_load import load_site, work_db

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female"}
OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "10334-1"}]},
    "valueQuantity": {"value": 1.5},
}


def bundle(kind: str, *resources: dict[str, object]) -> dict[str, object]:
    return {
        "resourceType": "Bundle",
        "id": f"b-{kind}",
        "type": kind,
        "entry": [{"fullUrl": f"urn:uuid:{i}", "resource": r} for i, r in enumerate(resources)],
    }


def package_folder(root: Path) -> Path:
    folder = root / "package"
    folder.mkdir(parents=True)
    files: dict[str, bytes] = {
        "package.json": orjson.dumps({"name": "x.y", "version": "1.0.0", "date": "20240102030405"}),
        ".index.json": b'{"files": []}',
        "Patient-p1.json": b"\xef\xbb\xbf" + orjson.dumps(PATIENT, option=orjson.OPT_INDENT_2),
        "Bundle-c.json": orjson.dumps(
            bundle("collection", OBSERVATION, bundle("document", {**PATIENT, "id": "p2"}))
        ),
        "Bundle-m.json": orjson.dumps(bundle("message", {**PATIENT, "id": "p3"})),
        "notes.json": b'{"title": "not a resource"}',
        "broken.json": b'{"resourceType": "Patient",\n "id": ',
        "README.md": b"# hello",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_folder_becomes_a_bulk_site_with_bundles_exploded(tmp_path: Path) -> None:
    out = tmp_path / "site"
    summary = convert_package(package_folder(tmp_path / "pkg"), out)

    assert summary.resources == {"Bundle": 3, "Observation": 1, "Patient": 2, "Unknown": 1}
    assert summary.bundles_exploded == 2  # the collection and the document inside it
    assert summary.entries_extracted == 3
    assert summary.unparsable == ["broken.json"]
    assert set(summary.skipped) == {".index.json", "package.json", "notes.json", "README.md"}
    # The message Bundle stays whole: its Patient is not filed on its own.
    assert {orjson.loads(x)["id"] for x in lines(out / "Patient.ndjson")} == {"p1", "p2"}
    assert lines(out / "Observation.ndjson") == [orjson.dumps(OBSERVATION)]
    assert lines(out / "Unknown.ndjson") == [b'{"resourceType": "Patient",  "id": ']
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["transactionTime"] == "2024-01-02T03:04:05Z"
    assert manifest["request"] == "npm:x.y@1.0.0#package"
    assert manifest["requiresAccessToken"] is False
    assert manifest["output"][0] == {"type": "Bundle", "url": "Bundle.ndjson", "count": 3}
    assert not list(out.glob(".*"))  # no temporary file left behind


def test_tgz_gives_the_same_bytes_as_the_folder(tmp_path: Path) -> None:
    folder = package_folder(tmp_path / "pkg")
    tgz = tmp_path / "x.y-1.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for path in sorted(folder.iterdir(), reverse=True):  # not in name order on purpose
            tar.add(path, arcname=f"package/{path.name}")
    convert_package(folder, tmp_path / "a")
    convert_package(tgz, tmp_path / "b", folder="package")
    for path in sorted((tmp_path / "a").iterdir()):
        assert (tmp_path / "b" / path.name).read_bytes() == path.read_bytes(), path.name


def test_tgz_reads_only_regular_files_directly_in_the_folder(tmp_path: Path) -> None:
    tgz = tmp_path / "evil.tgz"

    def add(tar: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE):
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

    patient = orjson.dumps(PATIENT)
    with tarfile.open(tgz, "w:gz") as tar:
        add(tar, "package/Patient-p1.json", patient)
        add(tar, "package/../Patient-up.json", patient)
        add(tar, "/package/Patient-abs.json", patient)
        add(tar, "package/link.json", kind=tarfile.SYMTYPE)
        add(tar, "package/sub/Patient-deep.json", patient)
    summary = convert_package(tgz, tmp_path / "out")
    assert summary.resources == {"Patient": 1}
    assert summary.skipped == {
        "package/../Patient-up.json": "unsafe member name (absolute or with ..)",
        "/package/Patient-abs.json": "unsafe member name (absolute or with ..)",
        "link.json": "not a regular file (link, device or folder)",
    }


def test_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "Patient.ndjson").write_bytes(b"{}\n")
    with pytest.raises(FileExistsError):
        convert_package(package_folder(tmp_path / "pkg"), out)


def test_landing_quarantines_the_unparsable_file_with_its_reason(tmp_path: Path) -> None:
    convert_package(package_folder(tmp_path / "pkg"), tmp_path / "sites" / "pkg")
    (tmp_path / "sites.yaml").write_text(
        "study_id: RESCUE\nwarehouse: wh/rescue.duckdb\n"
        "sites:\n  - {id: pkg, source: {kind: ndjson, path: sites/pkg}}\n"
    )
    config = load_config(tmp_path / "sites.yaml")
    result = load_site(config, config.sites[0])
    assert result.reasons == {"not_json": 1}
    with work_db(config, read_only=True) as con:
        rows = con.execute("SELECT resource_type, reason FROM raw.quarantine").fetchall()
        accepted = con.execute("SELECT sum(accepted) FROM raw.loads").fetchall()[0][0]
    assert rows == [("Unknown", "not_json")]
    assert accepted == 6  # 3 Bundles, 1 Observation, 2 Patients
