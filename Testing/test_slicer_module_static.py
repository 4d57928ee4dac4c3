"""Static checks of the Slicer module: packaging lists, UI bindings, declared metadata, import discipline.

Slicer's Qt and ScriptedLoadableModule do not exist outside Slicer, so these read the files instead.
"""

from __future__ import annotations

import ast
import py_compile
import re
import struct
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "SpineSegDiff"
MODULE_FILE = MODULE_DIR / "SpineSegDiff.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SpineSegDiff.ui"
ICON_FILE = MODULE_DIR / "Resources" / "Icons" / "SpineSegDiff.png"
HEAVY_PACKAGES = {"torch", "monai", "nnunetv2"}
SLICER_PACKAGES = {"slicer", "qt", "ctk", "vtk", "vtkmodules"}


def cmake_list(path: Path, variable: str) -> list[str]:
    """Entries of ``set(VARIABLE ...)`` in a CMakeLists.txt, with ``${MODULE_NAME}`` expanded."""
    text = path.read_text()
    module_name = re.search(r"set\(MODULE_NAME\s+(\S+)\)", text).group(1)
    body = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S).group(1)
    return [entry.replace("${MODULE_NAME}", module_name) for entry in body.split()]


def module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text())


def ui_widgets() -> dict[str, ElementTree.Element]:
    return {w.get("name"): w for w in ElementTree.parse(UI_FILE).getroot().iter("widget")}


def dynamic_property(widget: ElementTree.Element, name: str) -> str | None:
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return prop.findtext("string")
    return None


def top_level_imports(path: Path) -> set[str]:
    """First component of every module imported at module level (not inside functions or TYPE_CHECKING)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def all_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


# --- packaging ----------------------------------------------------------------------------------------------------


def test_every_python_file_of_the_module_is_listed_in_cmake():
    listed = set(cmake_list(MODULE_DIR / "CMakeLists.txt", "MODULE_PYTHON_SCRIPTS"))
    present = {p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    assert present - listed == set(), "add these to SpineSegDiff/CMakeLists.txt or they are not packaged"
    assert listed - present == set(), "these are listed in SpineSegDiff/CMakeLists.txt but do not exist"


def test_resources_are_listed_and_exist():
    resources = cmake_list(MODULE_DIR / "CMakeLists.txt", "MODULE_PYTHON_RESOURCES")
    assert set(resources) == {"Resources/UI/SpineSegDiff.ui", "Resources/Icons/SpineSegDiff.png",
                              "Resources/Terminology/SegmentationCategoryTypeModifier-SpineSegDiff.term.json"}
    for resource in resources:
        assert (MODULE_DIR / resource).is_file(), resource


def test_icon_is_a_128_pixel_png():
    header = ICON_FILE.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (128, 128)


def test_extension_cmake_declares_metadata_dependency_module_and_models():
    text = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"project\(SpineSegDiff\)", text)
    assert re.search(r'set\(EXTENSION_CATEGORY\s+"Segmentation"\)', text)
    assert re.search(r'set\(EXTENSION_DEPENDS\s+"PyTorch"\)', text)
    for key in ("HOMEPAGE", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS"):
        assert re.search(rf"set\(EXTENSION_{key}\s", text), key
    assert "find_package(Slicer REQUIRED)" in text and "include(${Slicer_USE_FILE})" in text
    assert "add_subdirectory(SpineSegDiff)" in text
    installed = re.search(r"foreach\(SpineSegDiff_RESOURCE_DIR\s+([^)]*)\)", text).group(1).split()
    assert installed == ["Models", "Samples", "Scripts"]
    source = r'"\$\{CMAKE_CURRENT_SOURCE_DIR\}/Resources/\$\{SpineSegDiff_RESOURCE_DIR\}"'
    assert re.search(r"install\(DIRECTORY\s+" + source, text)


# --- the module file ----------------------------------------------------------------------------------------------


def test_module_compiles(tmp_path):
    py_compile.compile(str(MODULE_FILE), cfile=str(tmp_path / "module.pyc"), doraise=True)


def test_module_declares_segmentation_category_and_documents_limits_and_citations():
    text = MODULE_FILE.read_text()
    assert re.search(r'self\.parent\.categories\s*=\s*\["Segmentation"\]', text)
    for needed in ("T2", "sagittal", "lumbar", "26 SPIDER", "MIDL 2025", "Scientific Data 11:264", "2024"):
        assert needed in text, needed


def test_module_has_the_slicer_classes_and_a_parameter_node_wrapper():
    classes = {node.name: node for node in module_tree().body if isinstance(node, ast.ClassDef)}
    bases = {name: {ast.unparse(b) for b in node.bases} for name, node in classes.items()}
    assert "ScriptedLoadableModule" in bases["SpineSegDiff"]
    assert "ScriptedLoadableModuleWidget" in bases["SpineSegDiffWidget"]
    assert "ScriptedLoadableModuleLogic" in bases["SpineSegDiffLogic"]
    assert "ScriptedLoadableModuleTest" in bases["SpineSegDiffTest"]
    wrapper = classes["SpineSegDiffParameterNode"]
    assert [ast.unparse(d) for d in wrapper.decorator_list] == ["parameterNodeWrapper"]


def parameter_names() -> set[str]:
    classes = (n for n in module_tree().body if isinstance(n, ast.ClassDef))
    wrapper = next(n for n in classes if n.name == "SpineSegDiffParameterNode")
    return {s.target.id for s in wrapper.body if isinstance(s, ast.AnnAssign)}


def test_module_imports_no_heavy_package_at_import_time():
    assert top_level_imports(MODULE_FILE) & HEAVY_PACKAGES == set()
    for path in sorted((MODULE_DIR / "SpineSegDiffSlicer").glob("*.py")):  # what the module imports at load time
        assert top_level_imports(path) & HEAVY_PACKAGES == set(), path.name
    for name in ("errors", "labels", "io", "options", "apps/protocol"):
        assert top_level_imports(MODULE_DIR / "SpineSegDiffLib" / f"{name}.py") & HEAVY_PACKAGES == set(), name


def test_no_core_file_names_slicer_qt_vtk_or_ctk():
    for path in sorted((MODULE_DIR / "SpineSegDiffLib").rglob("*.py")):
        assert all_imports(path) & SLICER_PACKAGES == set(), path.name


SLICER_SIDE = [MODULE_FILE, *sorted((MODULE_DIR / "SpineSegDiffSlicer").glob("*.py"))]
IN_PROCESS_INFERENCE = re.compile(r"\bSegmenter\b|\.segment\(|SegmenterCache|run_segmenter|BackgroundJob|"
                                  r"SpineSegDiffLib\.(pipeline|refiner|sampling|presegment|networks|batch)\b|"
                                  r"from SpineSegDiffLib import (pipeline|refiner|sampling|presegment|networks|batch)")


def test_the_module_side_never_runs_model_code_in_slicers_process():
    """Inference runs in the worker process: the module and its Slicer package import no threading (a
    Python thread in Slicer crawls, the GUI holding the GIL) and never touch the segmenter or the batch engine."""
    for path in SLICER_SIDE:
        assert all_imports(path) & {"threading", "concurrent", "multiprocessing"} == set(), path.name
        found = IN_PROCESS_INFERENCE.findall(path.read_text())
        assert not found, f"{path.name} runs inference in Slicer's process: {found}"


def test_the_module_side_never_computes_review_regions():
    """Review regions come from the worker (its result's ``review`` file, or a ``review`` request): Slicer's GUI
    thread only filters them."""
    for path in SLICER_SIDE:
        found = re.findall(r"regions_by_level|uncertain_regions|ndimage", path.read_text())
        assert not found, f"{path.name} computes review regions in Slicer's process: {found}"


def test_the_in_process_check_catches_inference_on_a_thread():
    assert IN_PROCESS_INFERENCE.search("job = BackgroundJob(lambda p: segmenter.segment(image, options, p))")
    assert IN_PROCESS_INFERENCE.search("from SpineSegDiffLib.inference.pipeline import Segmenter")


# --- UI bindings --------------------------------------------------------------------------------------------------


def test_ui_parses_and_has_every_widget_the_module_binds():
    widgets = ui_widgets()
    bound = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))
    assert bound, "the module binds no widget"
    assert bound - set(widgets) == set()


def test_ui_parameter_bindings_match_the_parameter_node():
    bindings = {dynamic_property(w, "SlicerParameterName") for w in ui_widgets().values()} - {None}
    assert bindings <= parameter_names()
    assert {"inputVolume", "preset", "device", "samples", "steps", "seed", "heatmapOpacity"} <= bindings


def test_every_mode_has_an_enabled_radio_button():
    widgets = ui_widgets()
    for button in ("centralRadioButton", "slicesRadioButton", "volumetricRadioButton"):
        properties = {p.get("name"): p for p in widgets[button].findall("property")}
        assert "enabled" not in properties


def test_review_table_has_structure_size_and_uncertainty_columns():
    table = ui_widgets()["regionsTable"]
    headers = [column.find("property").findtext("string") for column in table.findall("column")]
    assert headers == ["Structure", "Size", "Mean uncertainty"]


# --- scripts ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["batch_segment_slicer.py", "make_screenshot.py"])
def test_scripts_compile_and_document_their_use(name, tmp_path):
    path = REPO / "Resources" / "Scripts" / name
    py_compile.compile(str(path), cfile=str(tmp_path / "script.pyc"), doraise=True)
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and "--output" in docstring
