"""The lock file: what CI tests is what users get, and nothing in the environment is unpinned."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "requirements"
PIN = re.compile(r"^(?P<req>[A-Za-z0-9][A-Za-z0-9._-]*==[^\s\\;]+(?:\s*;\s*[^\\]+?)?)\s*\\?$")


def pins(lock: Path) -> dict[str, list[tuple[Requirement, list[str]]]]:
    """Each pinned package of a uv/pip-tools lock with its sha256 hashes, by canonical name."""
    found: dict[str, list[tuple[Requirement, list[str]]]] = {}
    current: list[str] | None = None
    for raw in lock.read_text().splitlines():
        if raw.startswith("    --hash=sha256:"):
            assert current is not None, f"{lock.name}: a hash before any package"
            current.append(raw.split("sha256:", 1)[1].rstrip(" \\"))
        elif raw and not raw[0].isspace() and not raw.startswith("#"):
            m = PIN.match(raw)
            assert m, f"{lock.name}: not an exact pin: {raw}"
            req = Requirement(m["req"])
            current = []
            found.setdefault(canonicalize_name(req.name), []).append((req, current))
    return found


def applicable(lock: Path) -> dict[str, Version]:
    """The version the lock pins for this interpreter and platform, by canonical name."""
    env = default_environment()
    out: dict[str, Version] = {}
    for name, entries in pins(lock).items():
        for req, _ in entries:
            if req.marker is None or req.marker.evaluate(env):
                assert name not in out, f"{lock.name}: two pins of {name} apply here"
                (spec,) = req.specifier
                out[name] = Version(spec.version)
    return out


@pytest.mark.parametrize("lock", sorted(LOCKS.glob("*.lock")), ids=lambda p: p.name)
def test_every_pin_of_every_lock_is_exact_and_hashed(lock: Path) -> None:
    entries = pins(lock)
    assert entries
    for name, versions in entries.items():
        for req, hashes in versions:
            assert [s.operator for s in req.specifier] == ["=="], name
            assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_every_installed_package_is_the_locked_version() -> None:
    """The running environment is exactly the lock: nothing unpinned, nothing drifted."""
    locked = applicable(LOCKS / "pipeline.lock")
    installed = {
        canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()
    }
    installed.pop("rescue-pipeline")
    unpinned = sorted(set(installed) - set(locked))
    drifted = sorted(n for n in set(installed) & set(locked) if installed[n] != locked[n])
    missing = sorted(set(locked) - set(installed))
    assert not unpinned, f"installed but not in the lock: {unpinned}"
    assert not drifted, f"installed version differs from the lock: {drifted}"
    assert not missing, f"locked but not installed: {missing}"


def test_the_lock_satisfies_every_range_pyproject_declares() -> None:
    """pyproject.toml says what we support, the lock what we run: the second is inside the first."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    locked = applicable(LOCKS / "pipeline.lock")
    for text in declared:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is declared but not locked: run tools/lock-deps"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"{req.name} {locked[name]} is outside {req.specifier}: run tools/lock-deps"
        )


def test_the_test_server_environment_is_pinned_to_its_release() -> None:
    locked = applicable(LOCKS / "sekmet.lock")
    assert locked["sekmet-fhir"] == Version("0.1.1")
    assert {"pip", "setuptools"} <= set(locked)
