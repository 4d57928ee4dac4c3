"""What the extension ships: licence, Extensions Index catalog entry (``SpineSegDiff.json``, valid against the
committed v1.0.1 schema and agreeing with CMakeLists.txt), every resource the module loads packaged, and the
bundled sample registered in Sample Data with its attribution."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

from SpineSegDiffSlicer import sample_data

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "SpineSegDiff"
REPOSITORY_URL = "https://github.com/spinesegdiff/SlicerSpineSegDiff"
CATALOG_ENTRY = REPO / "SpineSegDiff.json"
"""The Extensions Index catalog entry (Slicer 5.10 reads ``<Extension>.json``, no longer ``.s4ext``)."""
CATALOG_SCHEMA = REPO / "Testing" / "data" / "slicer-extension-catalog-entry-schema-v1.0.1.json"
"""Copy of the Extensions Index schema (provenance in ``Testing/data/PROVENANCE.md``)."""
CATALOG_SCHEMA_URL = ("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                      "slicer-extension-catalog-entry-schema-v1.0.1.json#")
"""``$schema`` as the peer entries (TotalSegmentator.json, NNUNet.json) write it."""


def cmake_metadata() -> dict[str, str]:
    """``set(EXTENSION_KEY value)`` of the top-level CMakeLists.txt, quotes removed."""
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    pairs = re.findall(r'^set\(EXTENSION_(\w+)\s+("[^"]*"|\S+)\)', text, re.M)
    return {key: value.strip('"') for key, value in pairs}


def catalog_entry() -> dict:
    return json.loads(CATALOG_ENTRY.read_text(encoding="utf-8"))


def catalog_schema() -> dict:
    return json.loads(CATALOG_SCHEMA.read_text(encoding="utf-8"))


def tracked_files() -> set[str]:
    result = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    return set(result.stdout.splitlines())


def test_licence_is_the_full_apache_2_text_with_the_projects_copyright():
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "9. Accepting Warranty or Additional Liability." in text
    assert "Copyright 2025 SpineSegDiff contributors" in text and "[yyyy]" not in text
    assert 'license = { text = "Apache-2.0" }' in (REPO / "pyproject.toml").read_text(encoding="utf-8")


def test_catalog_entry_is_valid_against_the_committed_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema, entry = catalog_schema(), catalog_entry()
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(entry)


def test_catalog_entry_names_the_schema_and_uses_only_its_fields():
    """What the schema says, checked without the jsonschema package: the entry names this schema version,
    has the required fields, no others (``additionalProperties: false``) and the declared types."""
    schema, entry = catalog_schema(), catalog_entry()
    assert entry["$schema"] == CATALOG_SCHEMA_URL == schema["$id"]
    assert set(schema["required"]) <= set(entry) <= set(schema["properties"])
    python_types = {"string": str, "array": list, "integer": int, "boolean": bool}
    for key, value in entry.items():
        assert isinstance(value, python_types[schema["properties"][key]["type"]]), key
    assert all(isinstance(item, str) for item in entry["build_dependencies"])
    tier = schema["properties"]["tier"]
    assert tier["minimum"] <= entry["tier"] <= tier["maximum"]


def test_catalog_entry_agrees_with_the_cmake_metadata():
    cmake, entry = cmake_metadata(), catalog_entry()
    assert entry["category"] == cmake["CATEGORY"]
    assert entry["build_dependencies"] == cmake["DEPENDS"].split(";") == ["PyTorch"]
    assert entry["scm_url"] == cmake["HOMEPAGE"] == REPOSITORY_URL  # without .git, as the peer entries
    assert entry["build_subdirectory"] == cmake["BUILD_SUBDIRECTORY"] == "."
    assert entry["scm_revision"] == "main"
    assert entry["tier"] == 1, "a new extension is experimental (tier 1) until it has a track record"


def test_the_catalog_entry_replaces_the_s4ext():
    files = tracked_files()
    assert "SpineSegDiff.json" in files
    assert not [name for name in files if name.endswith(".s4ext")], "Slicer 5.10's index reads <Extension>.json"
    assert "s4ext" not in (REPO / "CMakeLists.txt").read_text(encoding="utf-8")


def test_cmake_accepts_the_versions_slicer_5_10_extensions_use():
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"^cmake_minimum_required\(VERSION 3\.20\.6\.\.\.3\.22\.6 FATAL_ERROR\)", text, re.M)
    assert "Slicer 5.10 or newer" in cmake_metadata()["DESCRIPTION"]


def test_metadata_urls_point_at_files_of_this_repository():
    cmake = cmake_metadata()
    assert cmake["HOMEPAGE"] == REPOSITORY_URL
    files = tracked_files()
    for url in [cmake["ICONURL"], *cmake["SCREENSHOTURLS"].split()]:
        assert url.startswith(REPOSITORY_URL + "/raw/main/"), url
        assert url.removeprefix(REPOSITORY_URL + "/raw/main/") in files, f"{url} names no file of the repository"
    assert not any(word in " ".join(cmake.values()).lower() for word in ("todo", "example.com", "placeholder"))


def module_cmake_resources() -> set[str]:
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    body = re.search(r"set\(MODULE_PYTHON_RESOURCES\s+(.*?)\)", text, re.S).group(1)
    return {entry.replace("${MODULE_NAME}", "SpineSegDiff") for entry in body.split()}


def string_constants(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def test_every_resource_the_module_loads_is_packaged():
    listed = module_cmake_resources()
    module_text = (MODULE_DIR / "SpineSegDiff.py").read_text(encoding="utf-8")
    loaded = {"Resources/" + name for name in re.findall(r'resourcePath\("([^"]+)"\)', module_text)}
    constants = string_constants(MODULE_DIR / "SpineSegDiff.py")
    loaded |= {f"Resources/Terminology/{name}" for name in constants if name.endswith(".term.json")}
    thumbnail = Path(sample_data.sample_source_arguments(MODULE_DIR)["thumbnailFileName"])
    loaded.add(thumbnail.relative_to(MODULE_DIR).as_posix())
    assert loaded >= {"Resources/UI/SpineSegDiff.ui", "Resources/Icons/SpineSegDiff.png"}
    assert loaded - listed == set(), "add these to MODULE_PYTHON_RESOURCES in SpineSegDiff/CMakeLists.txt"
    for resource in listed:
        assert (MODULE_DIR / resource).is_file(), resource


def test_the_sample_is_installed_where_the_module_looks_for_it():
    top = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    installed = re.search(r"foreach\(SpineSegDiff_RESOURCE_DIR\s+([^)]*)\)", top).group(1).split()
    relative = sample_data.SAMPLE_RELATIVE_PATH
    assert relative.parts[0] == "Resources" and relative.parts[1] in installed
    assert relative.as_posix() in tracked_files()
    assert sample_data.sample_path(MODULE_DIR) == REPO / relative


class FakeSampleData:
    """Stand-in for Slicer's SampleData module with its registry (a dict of category -> sources)."""

    def __init__(self) -> None:
        registry: dict[str, list] = {}

        class SampleDataSource:
            def __init__(self, **arguments) -> None:
                self.arguments = arguments

            def __eq__(self, other) -> bool:
                return self.arguments == other.arguments

        class SampleDataLogic:
            @staticmethod
            def sampleDataSourcesByCategory(category=None):
                return registry if category is None else registry.get(category, [])

            @staticmethod
            def isSampleDataSourceRegistered(category, source) -> bool:
                return source in registry.get(category, [])

        self.SampleDataSource, self.SampleDataLogic, self.registry = SampleDataSource, SampleDataLogic, registry


def test_sample_is_registered_once_with_a_checksum_of_the_real_file_and_its_attribution():
    fake = FakeSampleData()
    assert sample_data.register(fake, MODULE_DIR) and sample_data.register(fake, MODULE_DIR)
    (source,) = fake.registry[sample_data.CATEGORY]
    arguments = source.arguments
    path = Path(url2pathname(urlparse(arguments["uris"]).path))
    assert path == (REPO / sample_data.SAMPLE_RELATIVE_PATH).resolve()
    assert arguments["checksums"] == "SHA256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert arguments["fileNames"] == path.name and Path(arguments["thumbnailFileName"]).is_file()
    assert "CC BY 4.0" in arguments["sampleDescription"] and "SPIDER" in arguments["sampleDescription"]
    assert "CC BY 4.0" in (REPO / sample_data.SAMPLE_RELATIVE_PATH).with_name("README.md").read_text(encoding="utf-8")


def test_a_missing_sample_is_not_offered(tmp_path):
    fake = FakeSampleData()
    assert sample_data.register(fake, tmp_path / "SpineSegDiff") is False
    assert fake.registry == {}
