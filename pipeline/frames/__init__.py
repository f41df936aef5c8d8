"""Frame sampling for CLIP and the video LLM (decord), stored as a few large files.

Modules: ``sampling`` (which frames), ``decode`` (decord, error causes), ``transforms`` (CLIP
crop, VLM JPEG), ``extract`` (the stage: :func:`extract_frames`, :class:`FramesConfig`),
``store`` (the directory format and :class:`FrameStore`, its reader).
"""

from pipeline.frames.extract import FramesConfig, FramesError, extract_frames, process_video
from pipeline.frames.sampling import timestamps, uniform_indices
from pipeline.frames.store import FrameStore, VlmFrame

__all__ = [
    "FrameStore", "FramesConfig", "FramesError", "VlmFrame", "extract_frames", "process_video",
    "timestamps", "uniform_indices",
]
