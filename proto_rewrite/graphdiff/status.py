"""The status of one entry of a diff, shared by ``compare`` (which decides it) and the renderers
``text`` and ``html`` (which show it), so that neither renderer imports ``compare``."""

CHANGED, UNCHANGED, ADDED_NODE, REMOVED_NODE = "changed", "unchanged", "added", "removed"
STATUSES = (CHANGED, REMOVED_NODE, ADDED_NODE, UNCHANGED)
