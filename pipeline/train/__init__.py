"""Training of the DiCoSA / MAC-VR head (cached CLIP features) or of CLIP + head end to end.

Public API (import from the submodules; nothing heavy is imported here)::

    pipeline.train.config.TrainConfig              # params.yaml: train
    pipeline.train.loop.train(config, variant, inputs, out_dir, live_dir=None, resume="auto")
    pipeline.train.loop.TrainInputs(features=..., frames=..., captions=..., tags=..., backbone=...)
    pipeline.train.checkpoint.load_trained(path, device) -> (MacVR, TrainConfig)
    pipeline.train.checkpoint.load_trained_clip(path, device) -> CLIP | None   # finetune mode
"""
