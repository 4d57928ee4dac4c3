"""What a node made by SpineSegDiff is, and which volume it was made from: one marking for every result node.

Each result node carries :data:`ROLE_ATTRIBUTE` (``segmentation``, ``uncertainty``, ``levels``, ...) and a
:data:`INPUT_ROLE` reference to its input volume, so that a re-run on the same volume updates the same
nodes, and heatmaps are never offered as inputs. :data:`NAME_SUFFIXES` names them after their volume.
"""

from __future__ import annotations

ROLE_ATTRIBUTE = "SpineSegDiff.Role"
"""Node attribute marking what a node is, e.g. to skip heatmaps as inputs."""
INPUT_ROLE = "SpineSegDiff.Input"
"""Node reference from a result node to the volume it was made from."""
NAME_SUFFIXES = {
    "segmentation": " SpineSegDiff",
    "uncertainty": " uncertainty",
    "level segments": " SpineSegDiff level segments",
}
"""A result node's name: its input volume's name plus this suffix."""


def mark(node, role: str, volume_node) -> None:
    """Mark ``node`` as the ``role`` result of ``volume_node``."""
    node.SetAttribute(ROLE_ATTRIBUTE, role)
    node.SetNodeReferenceID(INPUT_ROLE, volume_node.GetID())


def nodes_with_role(scene, volume_node, role: str | None = None) -> list:
    """The result nodes of ``volume_node`` (with ``role``, or any role), in scene order."""
    found = []
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        marked = node.GetAttribute(ROLE_ATTRIBUTE)
        if marked and (role is None or marked == role) and node.GetNodeReference(INPUT_ROLE) is volume_node:
            found.append(node)
    return found


def is_result(node) -> bool:
    """Whether ``node`` was made by SpineSegDiff (a heatmap, a segmentation, a table...)."""
    return bool(node.GetAttribute(ROLE_ATTRIBUTE))
