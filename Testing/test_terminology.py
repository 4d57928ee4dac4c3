"""Segment terminology checked against the real lists it comes from, not against ``labels.py`` itself.

The sources are excerpts of 3D Slicer's DICOM master terminology and of SlicerTotalSegmentator's SNOMED
mapping, committed with their provenance (``SpineSegDiff/Resources/Terminology/sources``), plus the module's
own ``.term.json`` that Slicer loads (it must agree with them, and adds no code of its own). The entries
written to ``.seg.nrrd`` files (core) and to MRML segments (Slicer's own segmentation classes, slicer-core) must
name standard SNOMED CT codes with exactly the meaning these lists give them: SCT 53120007 ("Upper limb"),
SCT 3177009 (in no list) or a private ``99...`` code fail.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from SpineSegDiffLib.anatomy.levels import VERTEBRA_NAMES
from SpineSegDiffLib.anatomy.report import level_terminology
from SpineSegDiffLib.labels import (
    ANATOMIC_CONTEXT,
    CATEGORY,
    LEVEL_TYPES,
    STRUCTURES,
    TERMINOLOGY_CONTEXT,
    Structure,
)
from SpineSegDiffLib.outputs.segfile import write_seg_nrrd

TERMINOLOGY = Path(__file__).resolve().parents[1] / "SpineSegDiff" / "Resources" / "Terminology"
MODULE_TERMS = TERMINOLOGY / "SegmentationCategoryTypeModifier-SpineSegDiff.term.json"
SLICER_MASTER = TERMINOLOGY / "sources" / "SegmentationCategoryTypeModifier-DICOM-Master.excerpt.json"
TOTALSEGMENTATOR = TERMINOLOGY / "sources" / "totalsegmentator_snomed_mapping.excerpt.csv"
TOTALSEGMENTATOR_LEVELS = TERMINOLOGY / "sources" / "totalsegmentator_snomed_mapping.levels.excerpt.csv"
Code = tuple[str, str, str]  # (coding scheme, code value, code meaning)


def term_json_types(path: Path) -> dict[Code, Code]:
    """``{type code: its category code}`` of a Slicer ``.term.json`` (or an excerpt of one)."""
    types = {}
    for category in json.loads(path.read_text())["SegmentationCodes"]["Category"]:
        category_code = (category["CodingSchemeDesignator"], category["CodeValue"], category["CodeMeaning"])
        for kind in category.get("Type", []):
            types[(kind["CodingSchemeDesignator"], kind["CodeValue"], kind["CodeMeaning"])] = category_code
    return types


def totalsegmentator_types() -> dict[Code, Code]:
    with TOTALSEGMENTATOR.open(newline="") as handle:
        return {(row["Type_CodingScheme"], row["Type_CodeValue"], row["Type_CodeMeaning"]):
                (row["Category_CodingScheme"], row["Category_CodeValue"], row["Category_CodeMeaning"])
                for row in csv.DictReader(handle)}


def totalsegmentator_level_types() -> dict[Code, Code]:
    """The vertebra rows of a later version of the same mapping (DICOM attribute names as columns)."""
    category, kind = "SegmentedPropertyCategoryCodeSequence.", "SegmentedPropertyTypeCodeSequence."
    with TOTALSEGMENTATOR_LEVELS.open(newline="") as handle:
        return {tuple(row[kind + key] for key in ("CodingSchemeDesignator", "CodeValue", "CodeMeaning")):
                tuple(row[category + key] for key in ("CodingSchemeDesignator", "CodeValue", "CodeMeaning"))
                for row in csv.DictReader(handle)}


def known_codes() -> dict[Code, Code]:
    """Every type code of the real lists: Slicer's DICOM master list and SlicerTotalSegmentator's mapping
    (the module's own ``.term.json`` is not a source)."""
    return {**term_json_types(SLICER_MASTER), **totalsegmentator_types(), **totalsegmentator_level_types()}


def parse_entry(entry: str) -> dict[str, object]:
    """A Slicer ``TerminologyEntry`` string: context~category~type~modifier~anatomic context~region~modifier."""
    parts = entry.split("~")
    assert len(parts) == 7, entry
    codes = [tuple(part.split("^")) for part in parts]
    return {"context": parts[0], "category": codes[1], "type": codes[2], "modifier": codes[3],
            "anatomic_context": parts[4]}


def assert_entry_from_real_lists(entry: str) -> None:
    parsed = parse_entry(entry)
    known = known_codes()
    assert parsed["context"] == TERMINOLOGY_CONTEXT
    assert parsed["anatomic_context"] == ANATOMIC_CONTEXT
    assert parsed["type"] in known, f"{parsed['type']} is in none of the terminology lists (or has another meaning)"
    assert parsed["category"] == known[parsed["type"]]
    assert parsed["modifier"] == ("", "", "")


def test_the_sources_say_what_the_old_codes_meant():
    master = {code[1]: code[2] for code in term_json_types(SLICER_MASTER)}
    assert master["53120007"] == "Upper limb" and master["51282000"] == "Vertebra"
    assert "3177009" not in {code[1] for code in known_codes()}


@pytest.mark.parametrize("old", [Structure(1, "SC", "Spinal canal", (0, 0, 1), "SCT", "53120007", "Spinal canal"),
                                 Structure(1, "SC", "Spinal canal", (0, 0, 1), "99SPINESEGDIFF", "SPINAL_CANAL",
                                           "Spinal canal"),
                                 Structure(3, "IVD", "Discs", (0, 1, 0), "SCT", "3177009", "Intervertebral disc")])
def test_the_check_refuses_the_old_codes(old):
    with pytest.raises(AssertionError):
        assert_entry_from_real_lists(old.terminology)


def code_of(structure: Structure) -> Code:
    return structure.coding_scheme, structure.code, structure.meaning


def test_structures_carry_standard_snomed_ct_codes_from_the_real_lists():
    by_key = {s.key: s for s in STRUCTURES}
    assert {s.coding_scheme for s in STRUCTURES} == {"SCT"}
    assert all(s.code.isdigit() for s in STRUCTURES), "SNOMED CT concept ids are numeric (no private codes)"
    master = term_json_types(SLICER_MASTER)
    for key in ("SC", "VB"):
        assert code_of(by_key[key]) in master, f"{key} is not in Slicer's DICOM master list with this meaning"
    assert code_of(by_key["IVD"]) in totalsegmentator_types()
    assert code_of(by_key["SC"]) == ("SCT", "280401006", "Spinal cerebrospinal fluid pathway")
    assert by_key["SC"].name == "Spinal canal", "the displayed name is unchanged"


def test_module_term_file_matches_the_label_table_and_names_our_context():
    terms = json.loads(MODULE_TERMS.read_text())
    assert terms["SegmentationCategoryTypeContextName"] == TERMINOLOGY_CONTEXT
    types = term_json_types(MODULE_TERMS)
    assert set(types) == {(s.coding_scheme, s.code, s.meaning) for s in STRUCTURES} | set(LEVEL_TYPES.values())
    assert set(types.values()) == {tuple(CATEGORY.split("^"))}
    assert not any(code[0].startswith("99") for code in types), "the module's terminology adds no private code"
    known = known_codes()
    assert all(code in known for code in types), "every type of the module's terminology comes from a real list"


@pytest.mark.parametrize("name", VERTEBRA_NAMES)
def test_every_level_entry_comes_from_the_real_lists(name):
    assert_entry_from_real_lists(level_terminology("vertebra", name))
    assert_entry_from_real_lists(level_terminology("disc", f"{name}/X"))


def test_lumbar_levels_have_their_own_codes_not_the_generic_vertebra():
    meanings = {name: parse_entry(level_terminology("vertebra", name))["type"][2] for name in ("S1", "L4", "T12")}
    assert meanings == {"S1": "Sacrum", "L4": "L4 vertebra", "T12": "T12 vertebra"}
    assert parse_entry(level_terminology("vertebra", "C3"))["type"][2] == "Vertebra"


def labels_image() -> sitk.Image:
    array = np.zeros((3, 8, 8), np.uint8)
    for structure in STRUCTURES:
        array[1, structure.value, 1:4] = structure.value
    return sitk.GetImageFromArray(array)


def test_seg_nrrd_entries_come_from_the_real_lists(tmp_path):
    path = tmp_path / "case.seg.nrrd"
    write_seg_nrrd(labels_image(), path)
    image = sitk.ReadImage(str(path))
    names = {}
    for i in range(len(STRUCTURES)):
        tags = image.GetMetaData(f"Segment{i}_Tags")
        entry = next(t.split(":", 1)[1] for t in tags.split("|") if t.startswith("TerminologyEntry:"))
        assert_entry_from_real_lists(entry)
        names[image.GetMetaData(f"Segment{i}_Name")] = parse_entry(entry)["type"][2]
    assert names == {"Spinal canal": "Spinal cerebrospinal fluid pathway", "Vertebrae": "Vertebra",
                     "Intervertebral discs": "Intervertebral disc"}


def test_seg_nrrd_codes_the_canal_as_spinal_csf_pathway(tmp_path):
    path = tmp_path / "case.seg.nrrd"
    write_seg_nrrd(labels_image(), path)
    image = sitk.ReadImage(str(path))
    tags = {image.GetMetaData(f"Segment{i}_Name"): image.GetMetaData(f"Segment{i}_Tags")
            for i in range(len(STRUCTURES))}
    assert "~SCT^280401006^Spinal cerebrospinal fluid pathway~" in tags["Spinal canal"]
    assert "99SPINESEGDIFF" not in "".join(tags.values())


def test_mrml_segment_entries_come_from_the_real_lists(tmp_path):
    slicer = pytest.importorskip("slicer")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("slicer-core (compiled MRML) is not installed")
    import vtk

    from SpineSegDiffSlicer import mrml

    scene = slicer.vtkMRMLScene()
    volume = mrml.volume_node_from_image(scene, sitk.Cast(labels_image(), sitk.sitkFloat32), "volume")
    node = mrml.labels_to_segmentation_node(scene, labels_image(), volume, "result", closed_surface=False)
    mrml.save_node(node, tmp_path / "saved.seg.nrrd")  # Slicer's own writer
    reread = slicer.vtkMRMLSegmentationStorageNode()
    reread.SetFileName(str(tmp_path / "saved.seg.nrrd"))
    loaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert reread.ReadData(loaded)
    for segmentation in (node.GetSegmentation(), loaded.GetSegmentation()):
        for structure in STRUCTURES:
            entry = vtk.reference("")
            assert segmentation.GetSegment(structure.key).GetTag("TerminologyEntry", entry)
            assert_entry_from_real_lists(str(entry))
