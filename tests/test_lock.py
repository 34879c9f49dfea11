"""requirements.lock (scripts/lock.sh): exact pins that agree with pyproject.toml."""

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def lock() -> dict[str, str]:
    out = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version and ";" not in line, f"not an exact pin: {line!r}"
            out[canonicalize_name(name)] = version
    return out


def test_every_dependency_is_pinned_within_its_range():
    pins = lock()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    for text in reqs:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock (bash scripts/lock.sh)"
        assert req.specifier.contains(pins[name], prereleases=True), (text, pins[name])
    assert pins["torch"] == "2.11.0" and pins["torchaudio"] == "2.11.0"
    assert "hookstream" not in pins and "setuptools" not in pins  # the project; a build tool


def test_the_installers_use_it():
    assert "-c requirements.lock" in (REPO / "scripts" / "setup.sh").read_text()
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert dockerfile.count("-c /src/requirements.lock") >= 3 and "COPY requirements.lock" in dockerfile
