"""macvr: MAC-VR text-to-video retrieval with modality-specific tags, as a library.

Stage entry points live in ``stages/``; this package holds everything they call.
Importing it has no side effects (no model loading, no thread settings).
"""

__version__ = "0.1.0"
