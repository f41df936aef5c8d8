"""The MAC-VR / DiCoSA retrieval head (temporal transformer, pooling, concepts, confidence)."""

from pipeline.model.config import MAX_LOGIT_SCALE, TAG_MODALITIES, ModelConfig, ModelParams
from pipeline.model.macvr import MacVR, ModelOutput, PairScores
from pipeline.model.temporal import backbone_init_problem, init_temporal_from_backbone

__all__ = ["MAX_LOGIT_SCALE", "MacVR", "ModelConfig", "ModelOutput", "ModelParams", "PairScores",
           "TAG_MODALITIES", "backbone_init_problem", "init_temporal_from_backbone"]
