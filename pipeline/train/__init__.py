"""Training of the DiCoSA / MAC-VR head (cached CLIP features) or of CLIP + head end to end.

Public API (import from the submodules; nothing heavy is imported here)::

    pipeline.train.config.TrainConfig              # params.yaml: train
    pipeline.train.loop.train(config, variant, inputs, out_dir, live_dir=None, resume="auto")
    pipeline.train.loop.TrainInputs(features=..., frames=..., captions=..., tags=..., backbone=...)
    pipeline.train.variants.load_variant(params, name, TrainConfig)   # train + variants.<name>
    pipeline.train.checkpoint.load(path) / head_from / backbone_from   # reading checkpoints
    (pipeline.evaluation.trained.TrainedModel is the loader for scoring)
"""
