"""Encoders, heads and the checkpoint files that carry them between commands."""

from neuro_ssl.models.checkpoints import (
    DECODER_FORMAT,
    ENCODER_FORMAT,
    MODEL_FORMAT,
    load_decoder,
    load_encoder,
    load_model,
    read_checkpoint,
    read_meta,
    save_decoder,
    save_encoder,
    save_model,
    strip_prefixes,
    unwrap,
)
from neuro_ssl.models.encoders import ARCHS, NORMS, Encoder, build_encoder
from neuro_ssl.models.heads import ContrastiveModel, ProjectionHead, SupervisedModel
from neuro_ssl.models.tabular import ClinicalEncoder

__all__ = [
    "ARCHS", "NORMS", "DECODER_FORMAT", "ENCODER_FORMAT", "MODEL_FORMAT", "Encoder", "build_encoder",
    "ProjectionHead", "ContrastiveModel", "SupervisedModel", "ClinicalEncoder",
    "save_encoder", "load_encoder", "save_model", "load_model", "save_decoder", "load_decoder",
    "read_checkpoint", "read_meta", "strip_prefixes", "unwrap",
]
