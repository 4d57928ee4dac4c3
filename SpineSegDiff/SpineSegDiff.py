"""SpineSegDiff: vertebrae, intervertebral discs and spinal canal on sagittal lumbar T2 MRI, with uncertainty.

The module is an adapter: the Widget binds the UI to a typed parameter node, the Logic writes the volume
to a file, sends one request to the worker process (``SpineSegDiffLib.apps.worker``, started with Slicer's
Python and reached through ``qt.QProcess``) and loads its result files back (``SpineSegDiffSlicer``).
No model code runs in Slicer's process, so the GUI never waits.
"""

from __future__ import annotations

import importlib
import logging
import traceback
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.labels import STRUCTURES, by_key
from SpineSegDiffLib.options import DEVICE_CHOICES, DEVICES, MODE_CHOICES, MODES, PRESET_HELP, PRESET_NAMES
from SpineSegDiffSlicer import install, levels_mrml, roles, sample_data
from SpineSegDiffSlicer import logic as core
from SpineSegDiffSlicer.jobs import Jobs
from SpineSegDiffSlicer.worker_client import WorkerClient

POLL_MS = 150
TERMINOLOGY_FILE = "SegmentationCategoryTypeModifier-SpineSegDiff.term.json"
MODE_BUTTONS = {"central": "centralRadioButton", "slices": "slicesRadioButton", "volume": "volumetricRadioButton"}


class SpineSegDiff(ScriptedLoadableModule):
    """Module description shown in Slicer."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SpineSegDiff"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["SpineSegDiff contributors"]
        self.parent.helpText = """
Segments the <b>vertebrae</b>, <b>intervertebral discs</b> and <b>spinal canal</b> of a sagittal lumbar MRI
and shows an <b>uncertainty heatmap</b> telling where to check and correct: an nnU-Net presegmentation is
refined by a diffusion model whose samples disagree where the result is doubtful.
<br><br><b>Limits:</b> made for <b>T2-weighted sagittal lumbar</b> series only. The bundled models were trained
on 26 SPIDER series on a CPU: they are a demonstration, not a clinical tool. "Every slice" runs the 2D model
on each sagittal slice, "Volumetric 3D" the 3D Diff-UNet over the whole volume; both give a heatmap for every
slice and use lighter presets than the central slice.
<br><br>Review panel: the most uncertain regions; click one to centre the views on it and select its segment.
<br><br>Levels panel: vertebrae and discs named from the sacrum up (L5/S1, L5, L4/L5, ...) with disc height,
height index, Pfirrmann grade and uncertainty; click a level to go there. Each level is also a segment, each
measured length a markups line you can check and move, and all measurements are in the "levels" table.
Grades are a research aid, not a diagnosis.
<br><br><b>Platforms:</b> needs Slicer 5.10 or newer on Linux or Windows (x86_64) or macOS on Apple silicon.
Python packages (MONAI, nnU-Net) are installed at the first Segment after asking; PyTorch comes from the PyTorch
extension. After a failed install, use Advanced > Reinstall dependencies.
"""
        self.parent.acknowledgementText = """
Method: SpineSegDiff, diffusion refinement of lumbar spine segmentation with uncertainty (MIDL 2025).
Data: SPIDER, van der Graaf et al., "Lumbar spine segmentation in MR images: a dataset and a public
benchmark", Scientific Data 11:264 (2024).
"""
        slicer.app.connect("startupCompleted()", self.loadTerminology)
        slicer.app.connect("startupCompleted()", self.registerSampleData)

    def loadTerminology(self) -> None:
        """Make the segments' terminology (Resources/Terminology) known to Slicer's terminology selector."""
        path = Path(self.parent.path).parent / "Resources" / "Terminology" / TERMINOLOGY_FILE
        slicer.modules.terminologies.logic().LoadTerminologyFromFile(str(path))


    def registerSampleData(self) -> None:
        """Offer the bundled SPIDER sample in the Sample Data module (with its source and CC BY 4.0 licence)."""
        import SampleData

        if not sample_data.register(SampleData, Path(self.parent.path).parent):
            logging.warning("SpineSegDiff: the bundled sample is not installed; not offered in Sample Data")


@parameterNodeWrapper
class SpineSegDiffParameterNode:
    """Inputs, options and outputs of the module (saved with the scene)."""

    inputVolume: vtkMRMLScalarVolumeNode
    mode: Annotated[str, Choice(list(MODES))] = "central"
    preset: Annotated[str, Choice(list(PRESET_NAMES))] = "standard"
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    samples: Annotated[int, WithinRange(0, 64)] = 0
    steps: Annotated[int, WithinRange(0, 64)] = 0
    seed: Annotated[int, WithinRange(0, 999999)] = 0
    heatmapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.6
    reviewThreshold: Annotated[float, WithinRange(0.05, 1.0)] = 0.5
    newOutputNodes: bool = False
    outputSegmentation: vtkMRMLSegmentationNode
    outputHeatmap: vtkMRMLScalarVolumeNode


class SpineSegDiffWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds the UI to the parameter node; runs jobs without blocking the GUI."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._regions = []
        self._report = {}
        self._shown = {"opacity": None, "threshold": None}

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SpineSegDiff.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self._labelChoices()
        self.logic = SpineSegDiffLogic()
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.connect("timeout()", self._pollJob)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegment)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.centralRadioButton.connect("toggled(bool)", self._onModeChanged)
        self.ui.slicesRadioButton.connect("toggled(bool)", self._onModeChanged)
        self.ui.volumetricRadioButton.connect("toggled(bool)", self._onModeChanged)
        self.ui.refreshRegionsButton.connect("clicked(bool)", self.onRefreshRegions)
        self.ui.regionsTable.connect("cellClicked(int,int)", self.onRegionClicked)
        self.ui.editSegmentButton.connect("clicked(bool)", self.onEditInSegmentEditor)
        self.ui.levelsTable.connect("cellClicked(int,int)", self.onLevelClicked)
        self.ui.reinstallButton.connect("clicked(bool)", self.onReinstall)
        self._setRunning(False)
        self.initializeParameterNode()

    def _labelChoices(self) -> None:
        """Mode labels and help texts, preset and device help: from ``SpineSegDiffLib.options``."""
        for choice in MODE_CHOICES:
            button = getattr(self.ui, MODE_BUTTONS[choice.key])
            button.text, button.toolTip = choice.label, choice.description
        self.ui.presetComboBox.toolTip = PRESET_HELP
        self.ui.deviceComboBox.toolTip = " ".join(f"{c.key}: {c.description}" for c in DEVICE_CHOICES)

    def cleanup(self) -> None:
        """Module closing: stop the timer and the worker process."""
        self._timer.stop()
        self.logic.closeWorker()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        """Stop updating the GUI; a running job goes on and its result is still added."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self.onCancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = self.logic.firstInputVolume()

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        node = self._parameterNode
        self.ui.centralRadioButton.checked = node.mode == "central"
        self.ui.slicesRadioButton.checked = node.mode == "slices"
        self.ui.volumetricRadioButton.checked = node.mode == "volume"
        self.ui.segmentButton.enabled = node.inputVolume is not None and not self._running()
        self.ui.segmentButton.toolTip = "Segment the input volume" if node.inputVolume else "Select an input volume"
        if node.outputHeatmap is not None and node.heatmapOpacity != self._shown["opacity"]:
            slicer.util.setSliceViewerLayers(foregroundOpacity=node.heatmapOpacity)
        if node.reviewThreshold != self._shown["threshold"]:
            self.updateRegionsTable()
        self._shown = {"opacity": node.heatmapOpacity, "threshold": node.reviewThreshold}

    def _onModeChanged(self, checked: bool) -> None:
        if self._parameterNode and checked:
            self._parameterNode.mode = next((m for m, b in MODE_BUTTONS.items() if getattr(self.ui, b).checked),
                                            "central")

    # --- running -------------------------------------------------------------------------------------------

    def onSegment(self) -> None:
        """Validate the input, write it for the worker and send the request (returns at once)."""
        node = self._parameterNode
        if self._running() or not self.logic.ensureRequirements():
            return
        try:
            options = core.make_options(node.mode, node.preset, node.device, node.samples, node.steps, node.seed)
            self.logic.startJob(node.inputVolume, options)
        except Exception as error:
            showError(error)
            return
        self._setRunning(True)
        self._timer.start()
        slicer.util.showStatusMessage("SpineSegDiff: segmenting " + node.inputVolume.GetName() + "...")

    def onReinstall(self) -> None:
        """Reinstall the Python dependencies (the repair path after a failed or interrupted install)."""
        if not self._running():
            self.logic.reinstallDependencies()

    def onCancel(self) -> None:
        """Kill the worker now (it restarts on the next click); nothing is added to the scene."""
        if not self._running():
            return
        self.logic.cancelJob()
        self._endJob("Cancelled: nothing was added to the scene.")

    def _running(self):
        """The job in flight (held by the logic's :class:`~SpineSegDiffSlicer.jobs.Jobs`), or None."""
        return self.logic.jobs.running if self.logic else None

    def _endJob(self, status: str) -> None:
        self._timer.stop()
        self._setRunning(False)
        self.ui.statusLabel.text = status
        slicer.util.showStatusMessage("SpineSegDiff: " + status, 5000)

    def _pollJob(self) -> None:
        """Timer tick: read the worker's events (non-blocking) and act on the last ones."""
        job, source = self._running(), self.logic.jobs.source
        for event in self.logic.pollJob():
            kind = event.get("event")
            if kind == "progress":
                self.ui.progressBar.value = int(round(100 * event["fraction"]))
                self.ui.statusLabel.text = event["stage"].capitalize()
            elif kind == "error":
                self._endJob("Failed.")
                showError(SpineSegDiffError(event["message"]), event.get("details", ""))
                return
            elif kind == "result" and job.kind == "review":
                self._endJob("Review list updated.")
                self.logic.loadReview(job, event["files"], source.segmentation, source.heatmap)
                self.updateRegionsTable()
                return
            elif kind == "result":
                self._endJob("Loading the result...")
                self._publish(job, source, event)
                return

    def _publish(self, job, volume, event) -> None:
        """Main thread: add the result nodes (or nothing) and show them."""
        if volume is None or volume.GetScene() is not slicer.mrmlScene:
            self.ui.statusLabel.text = "The input volume was removed: the result was discarded."
            self.logic.jobs.discard(job)
            return
        try:
            parameterNode = self._parameterNode or self.logic.getParameterNode()
            nodes, report = self.logic.loadResult(volume, job, event["files"], parameterNode.newOutputNodes)
        except Exception as error:
            self.ui.statusLabel.text = "The result could not be loaded."
            showError(error)
            return
        parameterNode.outputSegmentation = nodes.segmentation
        parameterNode.outputHeatmap = nodes.heatmap
        self.logic.showResults(volume, nodes, report, parameterNode.heatmapOpacity)
        seconds = event.get("seconds", 0.0)
        self.ui.statusLabel.text = f"Done in {seconds:.0f} s. Check the bright areas of the heatmap."
        slicer.util.showStatusMessage(f"SpineSegDiff: done in {seconds:.0f} s", 5000)
        self.updateRegionsTable()
        self.updateLevelsTable(report)

    def _setRunning(self, running: bool) -> None:
        self.ui.progressBar.visible = running
        self.ui.progressBar.value = 0
        self.ui.cancelButton.visible = running
        self.ui.inputsCollapsibleButton.enabled = not running
        self.ui.advancedCollapsibleButton.enabled = not running
        self.ui.segmentButton.enabled = not running and bool(self._parameterNode and self._parameterNode.inputVolume)

    # --- review --------------------------------------------------------------------------------------------

    def onRefreshRegions(self) -> None:
        """Ask the worker for the regions of the current segments (e.g. after edits); the list follows."""
        node = self._parameterNode
        if self._running() or not node or not node.outputSegmentation or not node.outputHeatmap:
            return
        try:
            self.logic.startReview(node.outputSegmentation, node.outputHeatmap)
        except Exception as error:
            showError(error)
            return
        self._setRunning(True)
        self.ui.statusLabel.text = "Updating the review list..."
        self._timer.start()

    def updateRegionsTable(self) -> None:
        """List the most uncertain regions of the current result (computed by the worker, here only filtered)."""
        node = self._parameterNode
        table = self.ui.regionsTable
        table.setRowCount(0)
        self._regions = []
        if not node or not node.outputSegmentation or not node.outputHeatmap:
            return
        try:
            self._regions = self.logic.reviewRegions(node.outputSegmentation, node.outputHeatmap, node.reviewThreshold)
        except Exception as error:
            showError(error)
            return
        table.setRowCount(len(self._regions))
        for row, (region, _ras) in enumerate(self._regions):
            unit = "mm\u00b2" if region.unit == "mm2" else "mm\u00b3"
            cells = (structureName(region.structure_key), f"{region.size_mm:.0f} {unit}",
                     f"{region.mean_uncertainty:.2f}")
            for column, text in enumerate(cells):
                item = qt.QTableWidgetItem(text)
                item.setFlags(qt.Qt.ItemIsSelectable | qt.Qt.ItemIsEnabled)
                table.setItem(row, column, item)

    def onRegionClicked(self, row: int, column: int) -> None:
        """Centre the slice views on the region and select its segment in the Segment Editor."""
        if not 0 <= row < len(self._regions):
            return
        region, ras = self._regions[row]
        slicer.modules.markups.logic().JumpSlicesToLocation(*ras, True)
        if region.structure_key in {s.key for s in STRUCTURES}:
            self.logic.selectSegment(self._parameterNode.outputSegmentation, region.structure_key)

    # --- levels --------------------------------------------------------------------------------------------

    def updateLevelsTable(self, report: dict) -> None:
        """List the named levels of the last result, bottom-up, and say why naming is uncertain if it is."""
        self._report = report
        table = self.ui.levelsTable
        rows = levels_mrml.summary_rows(report)
        table.setRowCount(len(rows))
        for row, cells in enumerate(rows):
            for column, text in enumerate(cells):
                item = qt.QTableWidgetItem(text)
                item.setFlags(qt.Qt.ItemIsSelectable | qt.Qt.ItemIsEnabled)
                table.setItem(row, column, item)
        reasons = report.get("naming_reasons") or []
        self.ui.levelsNoteLabel.text = ("Level names uncertain: " + "; ".join(reasons)) if reasons else ""

    def onLevelClicked(self, row: int, column: int) -> None:
        """Centre the slice views on the level."""
        rows = levels_mrml.level_rows(self._report)
        if 0 <= row < len(rows):
            ras = levels_mrml.level_centroid_ras(self._report, rows[row]["name"])
            if ras is not None:
                slicer.modules.markups.logic().JumpSlicesToLocation(*ras, True)

    def onEditInSegmentEditor(self) -> None:
        rows = self.ui.regionsTable.selectionModel().selectedRows()
        if rows:
            self.onRegionClicked(rows[0].row(), 0)
        elif self._parameterNode.outputSegmentation:
            self.logic.selectSegment(self._parameterNode.outputSegmentation, None)
        slicer.util.selectModule("SegmentEditor")


def structureName(key: str) -> str:
    try:
        return by_key(key).name
    except KeyError:
        return "None (background)"


def showError(error: BaseException, details: str = "") -> None:
    """A user-fixable problem as its message (with the worker's details, if any); anything else with the traceback."""
    if isinstance(error, SpineSegDiffError):
        slicer.util.errorDisplay(str(error), windowTitle="SpineSegDiff", detailedText=details or None)
        return
    details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    logging.error("SpineSegDiff failed:\n%s", details)
    slicer.util.errorDisplay(f"Segmentation failed: {error}", windowTitle="SpineSegDiff", detailedText=details)


class SpineSegDiffLogic(ScriptedLoadableModuleLogic):
    """MRML <-> core; all the MRML work lives in ``SpineSegDiffSlicer.logic`` / ``mrml`` (testable without Qt)."""

    def __init__(self, modelsDir: Path | None = None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.modelsDir = modelsDir  # None: the bundled models (Resources/Models)
        self.jobs = Jobs(self._makeWorkerClient)  # the running job: request, input folder, source node
        self.review = core.ReviewCache()

    def getParameterNode(self):
        return SpineSegDiffParameterNode(super().getParameterNode())

    def firstInputVolume(self):
        """The first scalar volume that is not a SpineSegDiff heatmap, or None."""
        for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
            if not roles.is_result(node) and not node.IsA("vtkMRMLLabelMapVolumeNode"):
                return node
        return None

    def ensureRequirements(self) -> bool:
        """Refuse an unsupported platform; install missing or outdated packages after asking. True when all is ready."""
        refused = install.unsupported_platform_message()
        if refused:
            slicer.util.errorDisplay(refused, windowTitle="SpineSegDiff")
            return False
        report = install.check()
        for problem in report.slicer:
            logging.warning("SpineSegDiff: Slicer's own package is outside a requirement (kept): %s", problem)
        if report.ok:
            return True
        question = ("SpineSegDiff needs these Python packages, which are missing or outdated:\n\n  "
                    + "\n  ".join(report.problems()[:15]) + "\n\nInstall them now? PyTorch comes from the PyTorch "
                    "extension; this downloads up to a few GB and can take several minutes; Slicer is busy meanwhile.")
        if not slicer.util.confirmOkCancelDisplay(question, windowTitle="SpineSegDiff"):
            return False
        return self._runInstall(install.install)

    def reinstallDependencies(self) -> bool:
        """Reinstall the core's packages and install whatever they miss, after asking. True when all is ready."""
        question = ("Reinstall MONAI, nnU-Net and highdicom and install every missing or outdated package they need? "
                    "Slicer's own packages and PyTorch are kept. This can take several minutes.")
        if not slicer.util.confirmOkCancelDisplay(question, windowTitle="SpineSegDiff"):
            return False
        return self._runInstall(install.repair)

    def _runInstall(self, action) -> bool:
        """``install.install`` or ``install.repair`` with Slicer's pip; one clear message when something is left."""
        slicer.app.setOverrideCursor(qt.Qt.WaitCursor)
        try:
            action(slicer.util.pip_install, installTorchWithExtension, log=logging.info)
        except Exception as error:
            slicer.app.restoreOverrideCursor()
            slicer.util.errorDisplay(f"SpineSegDiff could not install its Python packages.\n\n{error}",
                                     windowTitle="SpineSegDiff", detailedText=traceback.format_exc())
            return False
        slicer.app.restoreOverrideCursor()
        importlib.invalidate_caches()
        return True

    def _makeWorkerClient(self) -> WorkerClient:
        from SpineSegDiffSlicer.qprocess_runner import QProcessRunner

        return WorkerClient(QProcessRunner, models_dir=self.modelsDir)

    def startJob(self, volumeNode, options):
        """Write the volume for the worker and send the request; poll with :meth:`pollJob`."""
        return self.jobs.start(lambda client, folder: client.submit(
            core.write_input(volumeNode, folder), core.worker_options(options), stem="volume"), source=volumeNode)

    def startReview(self, segmentationNode, heatmapNode):
        """Send the current segments and heatmap to the worker for new review regions (see :meth:`loadReview`)."""
        nodes = core.ResultNodes(segmentationNode, heatmapNode)
        return self.jobs.start(lambda client, folder: client.submit_review(
            *core.write_review_input(slicer.mrmlScene, nodes, folder)), source=nodes)

    def loadReview(self, job, files: dict, segmentationNode, heatmapNode) -> None:
        """Take the worker's review regions for these nodes; the worker's files are removed."""
        try:
            self.review.load(core.ResultNodes(segmentationNode, heatmapNode), files.get("review"))
        finally:
            self.jobs.discard(job)

    def pollJob(self) -> list:
        return self.jobs.poll()

    def cancelJob(self) -> None:
        self.jobs.cancel()

    def closeWorker(self) -> None:
        self.jobs.close()

    def loadResult(self, volumeNode, job, files: dict, newNodes: bool = False):
        """Result nodes from the worker's files (then the files are removed) and the run's report; the report's
        levels become the levels table, one segment per level, measurement lines and level-name points.

        The previous result's nodes on the same volume are updated unless ``newNodes``.
        """
        try:
            nodes = core.load_result_nodes(slicer.mrmlScene, volumeNode, files, new_nodes=newNodes)
            self.review.load(nodes, files.get("review"))
            report = core.read_report(files)
            levels_mrml.load_levels(slicer.mrmlScene, volumeNode, report, core.read_level_labels(files),
                                    new_nodes=newNodes)
            return nodes, report
        finally:
            self.jobs.discard(job)

    def showResults(self, volumeNode, nodes, report: dict, opacity: float) -> None:
        """Image under the heatmap in 2D, segments in 2D and 3D, views on the processed slice."""
        slicer.util.setSliceViewerLayers(background=volumeNode, foreground=nodes.heatmap, foregroundOpacity=opacity)
        nodes.segmentation.GetDisplayNode().SetVisibility(True)
        slicer.util.resetThreeDViews()
        if report.get("slice_index") is not None and report.get("sagittal_axis") is not None:
            ras = core.processed_slice_ras(nodes.heatmap, report["slice_index"], report["sagittal_axis"])
            slicer.modules.markups.logic().JumpSlicesToLocation(*ras, True)

    def reviewRegions(self, segmentationNode, heatmapNode, threshold: float):
        """The regions at ``threshold``: computed on the first call for a result, then only filtered."""
        return self.review.regions(core.ResultNodes(segmentationNode, heatmapNode), threshold)

    def selectSegment(self, segmentationNode, segmentId: str | None) -> None:
        """Make the Segment Editor edit this segmentation (and segment) on the volume it was made from."""
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(segmentationNode)
        volumeNode = segmentationNode.GetNodeReference(segmentationNode.GetReferenceImageGeometryReferenceRole())
        setSource = getattr(editor, "setSourceVolumeNode", None) or editor.setMasterVolumeNode
        if volumeNode is not None:
            setSource(volumeNode)
        if segmentId:
            editor.setCurrentSegmentID(segmentId)


def installTorchWithExtension(requirement: str) -> bool:
    """torch through the PyTorch extension (it picks the build for this GPU); False without the extension."""
    try:
        import PyTorchUtils
    except ImportError:
        return False
    logic = PyTorchUtils.PyTorchUtilsLogic()
    return logic.installTorch(askConfirmation=False, torchVersionRequirement=requirement) is not None


class SpineSegDiffTest(ScriptedLoadableModuleTest):
    """Self-test inside Slicer: the MRML bridge, then a whole run when the bundled models are installed."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_BridgeRoundTrip()
        self.setUp()
        self.test_SegmentAndCancel()

    def syntheticVolume(self):
        import numpy as np

        array = np.random.default_rng(0).normal(100, 10, (16, 96, 80)).astype(np.float32)
        array[4:12, 20:60, 20:40] += 300
        volume = slicer.util.addVolumeFromArray(array, name="synthetic spine")
        volume.SetSpacing(1.0, 1.0, 3.0)
        return volume

    def test_BridgeRoundTrip(self) -> None:
        import numpy as np

        from SpineSegDiffSlicer import mrml

        volume = self.syntheticVolume()
        image = mrml.image_from_volume_node(volume)
        copy = mrml.volume_node_from_image(slicer.mrmlScene, image, "copy")
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(copy), slicer.util.arrayFromVolume(volume)))
        self.assertEqual(tuple(copy.GetSpacing()), tuple(volume.GetSpacing()))
        self.delayDisplay("MRML bridge round trip passed")

    def waitForEvents(self, logic, until, timeout: float = 600.0) -> list:
        """Poll the worker as the module's timer does, keeping the GUI alive, until ``until(event)``."""
        import time

        events, deadline = [], time.monotonic() + timeout
        while not any(until(e) for e in events) and time.monotonic() < deadline:
            slicer.app.processEvents()
            events += logic.pollJob()
            time.sleep(0.05)
        self.assertTrue(any(until(e) for e in events), "the worker did not answer in time")
        return events

    def test_SegmentAndCancel(self) -> None:
        """A whole run in the worker process, then a cancel that leaves the scene unchanged."""
        if install.missing_or_outdated():
            self.delayDisplay("Python dependencies not installed: whole-run test skipped")
            return
        volume = self.syntheticVolume()
        logic = SpineSegDiffLogic()
        options = core.make_options(preset="fast", device="cpu", samples=2, steps=2)
        try:
            before = slicer.mrmlScene.GetNumberOfNodes()
            logic.startJob(volume, options)
            self.waitForEvents(logic, lambda e: e.get("event") == "progress" and e["stage"] != "loading models")
            logic.cancelJob()
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
            job = logic.startJob(volume, options)
            result = self.waitForEvents(logic, lambda e: e.get("event") in ("result", "error"))[-1]
            self.assertEqual(result["event"], "result", result.get("message"))
            nodes, _report = logic.loadResult(volume, job, result["files"])
        finally:
            logic.closeWorker()
        segmentation = nodes.segmentation.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), len(STRUCTURES))
        for structure in STRUCTURES:
            self.assertEqual(segmentation.GetSegment(structure.key).GetName(), structure.name)
        self.assertEqual(nodes.heatmap.GetImageData().GetDimensions(), volume.GetImageData().GetDimensions())
        self.delayDisplay("Segmentation in the worker process and cancel passed")
