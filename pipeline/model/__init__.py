"""The MAC-VR / DiCoSA retrieval head (temporal transformer, pooling, concepts, confidence)."""

from pipeline.model.config import ModelConfig
from pipeline.model.macvr import MacVR, ModelOutput, PairScores
from pipeline.model.temporal import clip_text_init_problem, init_temporal_from_clip

__all__ = ["MacVR", "ModelConfig", "ModelOutput", "PairScores", "clip_text_init_problem",
           "init_temporal_from_clip"]
