"""The auxiliary-caption sections of params.yaml for tests (beside tests.tags_fake_server.default_params)."""

from __future__ import annotations

import copy

from tests.tags_fake_server import default_params


def aux_params(base_url: str = "http://127.0.0.1:9/v1", model: str = "fake-model", visual: str = "captions",
               textual: str = "captions") -> dict:
    """Tag sections + caption_video / caption_text / clean_captions + features.auxiliary."""
    params = default_params(base_url, model)
    openai = copy.deepcopy(params["tag_text"]["openai"])
    openai["max_tokens"] = 512
    params["caption_video"] = {
        "backend": "offline", "input": "video", "prompt": "caption_video_appx_g", "video_input": "video",
        "num_captions": 10, "temperature": 0.7, "seed": 1234, "openai": copy.deepcopy(openai),
        "offline": {"facts_per_caption": 2, "background_prob": 0.4, "second_object_prob": 0.3}}
    params["caption_text"] = {
        "backend": "offline", "prompt": "paraphrase_appx_g", "api": "chat", "num_captions": 10,
        "temperature": 0.7, "seed": 1234, "openai": copy.deepcopy(openai),
        "seq2seq": {"model": "tuner007/pegasus_paraphrase", "path": None, "revision": "main", "device": "cpu",
                    "batch_size": 4, "num_beams": 10, "max_input_tokens": 60, "max_new_tokens": 60,
                    "sample": False, "top_p": 0.9, "torch_threads": 1},
        "offline": {"swap_prob": 0.5}}
    params["clean_captions"] = {"min_words": 2, "max_words": 30, "drop_copies": True, "max_captions": 10}
    params["features"] = {"auxiliary": {"visual": visual, "textual": textual}}
    return params
