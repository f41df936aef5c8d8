"""The per-variant input manifest (``inputs@<variant>``): it changes exactly when something the
variant reads changes. A tag-only change leaves DiCoSA's manifest, and its trained model, byte
for byte the same, and changes MAC-VR's; each ablation follows only its own modality."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.io import read_json, write_json, write_npy
from pipeline.train.inputs import TAG_ARRAYS, TAG_FREE_FILES, file_md5, tag_free_meta, variant_inputs
from pipeline.train.loop import TrainInputs, train
from tests.test_train_common import make_features, tiny_config


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    torch.set_num_threads(1)
    return make_features(tmp_path_factory.mktemp("inputs_features"))


def _tags_table(path, words):
    pd.DataFrame({"item_id": ["v0", "v0#0"], "modality": ["visual", "textual"], "split": ["train", "train"],
                  "tags": [words, words]}).to_parquet(path)


def _retag(src, dst, modality=None, meta_change=None):
    """A copy of ``src`` whose tag encodings (of ``modality``, or both) and/or tag meta changed."""
    shutil.copytree(src, dst)
    rng = np.random.default_rng(1)
    for m in ([modality] if modality else list(TAG_ARRAYS)):
        for name in TAG_ARRAYS[m]:
            arr = np.load(dst / name)
            write_npy((arr + rng.normal(size=arr.shape)).astype(arr.dtype), dst / name)
    if meta_change:
        meta = read_json(dst / "meta.json")
        meta.update(meta_change)
        write_json(meta, dst / "meta.json")
    return dst


def test_a_tag_only_change_moves_exactly_the_variants_that_read_tags(features, tmp_path):
    tags_a, tags_b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    _tags_table(tags_a, ["red", "circle"])
    _tags_table(tags_b, ["blue", "square"])
    shuffled = _retag(features, tmp_path / "shuffled", meta_change={"tag_control": "shuffled", "train_tag_draws": 8})
    visual_only = _retag(features, tmp_path / "visual_only", modality="visual")
    base = {name: variant_inputs(tags, features, tags_a) for name, tags in
            (("dicosa", []), ("macvr", ["visual", "textual"]), ("no_vt", ["textual"]), ("no_tt", ["visual"]))}
    assert base["dicosa"]["files"] == {} and base["dicosa"]["tags"] == []
    assert set(base["macvr"]["files"]) == {f"features/{n}" for ns in TAG_ARRAYS.values() for n in ns} | {"tags.parquet"}
    assert base["macvr"]["files"]["tags.parquet"] == file_md5(tags_a)
    assert "infer_tags" not in base["dicosa"]["features_meta"] and "infer_tags" in base["macvr"]["features_meta"]

    def changed(features_dir, tags):
        return {name: variant_inputs(base[name]["tags"], features_dir, tags) != base[name] for name in base}

    assert changed(features, tags_a) == {"dicosa": False, "macvr": False, "no_vt": False, "no_tt": False}
    assert changed(shuffled, tags_a) == {"dicosa": False, "macvr": True, "no_vt": True, "no_tt": True}
    assert changed(features, tags_b) == {"dicosa": False, "macvr": True, "no_vt": True, "no_tt": True}
    # The visual encodings alone: the variant without visual tags reads none of them (its meta is
    # unchanged too), the others do.
    assert changed(visual_only, tags_a) == {"dicosa": False, "macvr": True, "no_vt": False, "no_tt": True}
    # What every variant reads is a DVC dep of train/evaluate one by one, not through the manifest.
    meta = read_json(features / "meta.json")
    assert set(tag_free_meta(meta)) < set(meta) and set(TAG_FREE_FILES) <= {p.name for p in features.iterdir()}
    with pytest.raises(ValueError, match="unknown tag modality 'audio'"):
        variant_inputs(["audio"], features, tags_a)
    with pytest.raises(FileNotFoundError, match="tags.parquet: not found"):
        variant_inputs(["visual"], features, tmp_path / "tags.parquet")


def test_dicosa_trained_on_other_tag_encodings_is_byte_identical(features, tmp_path):
    """The claim the manifest rests on: DiCoSA's files do not depend on the tag encodings (while
    MAC-VR's do), so not re-running it after a tag change loses nothing."""
    other = _retag(features, tmp_path / "other", meta_change={"tag_control": "shuffled"})
    for variant, same in (("dicosa", True), ("macvr", False)):
        config = tiny_config(variant, epochs=1)
        for name, feats in (("a", features), ("b", other)):
            train(config, variant, TrainInputs(features=feats), tmp_path / variant / name, live_dir=None)
        a, b = ((tmp_path / variant / n / "model.pt").read_bytes() for n in ("a", "b"))
        assert (a == b) == same, variant
