"""The local seq2seq paraphraser (``caption_text.backend: seq2seq``) on a tiny random-weight PEGASUS
built here: no download, the same tokenizer/model classes and loading path as the paper's
``tuner007/pegasus_paraphrase``."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

from pipeline.aux_captions.judge import judge_sentences  # noqa: E402
from pipeline.aux_captions.seq2seq import Seq2SeqConfig, model_fingerprint, paraphrase  # noqa: E402

CORPUS = ["a man is playing a guitar on stage", "a woman cooks pasta in a small kitchen",
          "two dogs run across a grassy field", "a child rides a red bicycle down the street",
          "people are dancing at a crowded party", "a cat sleeps on the sofa near a window"]
TEXTS = ["a man plays the guitar", "a dog runs in the field", "a woman is cooking pasta",
         "children dance at a party", "a cat sleeps near the window"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matmuls: threads only add scheduling noise and time
    yield
    torch.set_num_threads(threads)


def _tiny_pegasus(folder: Path) -> None:
    """A sentencepiece tokenizer trained on CORPUS (as PEGASUS ships spiece.model) and a 1-layer
    PEGASUS with random weights, saved together like a downloaded model folder."""
    folder.mkdir(parents=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 4), model_prefix=str(folder / "spiece"), vocab_size=40,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>",
        eos_piece="</s>", unk_piece="<unk>", minloglevel=2)
    (folder / "spiece.vocab").unlink()
    # The layout tuner007/pegasus_paraphrase ships (spiece.model, no tokenizer.json): loading it makes
    # transformers convert the sentencepiece model, which needs sentencepiece and protobuf.
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PegasusTokenizer", "model_max_length": 64}))
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    config = transformers.PegasusConfig(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, forced_eos_token_id=1,
        init_std=0.5)  # large weights: clear-cut logits, no near-ties between beams
    torch.manual_seed(0)
    model = transformers.PegasusForConditionalGeneration(config)
    # PEGASUS reserves ~100 ids (<mask_1>, <unk_2>...) that decoding drops: a random model would
    # mostly say those and answer empty lines, so steer it to the corpus' pieces.
    unsayable = [i for i in tokenizer.all_special_ids if i != tokenizer.eos_token_id]
    with torch.no_grad():
        model.final_logits_bias[0, unsayable] = -1e4
    model.save_pretrained(folder)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("seq2seq") / "tiny-pegasus"
    _tiny_pegasus(folder)
    return folder


def _cfg(path: Path | str | None = None, **changes) -> Seq2SeqConfig:
    base = Seq2SeqConfig(model="tiny/pegasus", path=None if path is None else str(path), revision="main",
                         device="cpu", batch_size=4, num_beams=6, max_input_tokens=32, max_new_tokens=8,
                         sample=False, top_p=0.9, torch_threads=0)
    return dataclasses.replace(base, **changes)


def test_beam_search_gives_one_bullet_list_of_num_lines_per_text(model_dir):
    answers = paraphrase(TEXTS, _cfg(model_dir), num=5, temperature=1.0, seeds=range(len(TEXTS)), progress=False)
    assert len(answers) == len(TEXTS)
    for answer in answers:
        lines = answer.split("\n")
        assert len(lines) == 5 and all(line.startswith("- ") for line in lines)
        assert all(line == "- " + " ".join(line[2:].split()) for line in lines)  # whitespace normalised
        assert all(line[2:] for line in lines)  # the steered tiny model always says something
        judge_sentences(answer, "stop")  # the stage's judge reads it (a random model's words may not pass)


def test_answers_are_deterministic_and_independent_of_the_batch(model_dir):
    seeds = [11, 12, 13]
    beam = paraphrase(TEXTS[:3], _cfg(model_dir), 4, 1.0, seeds, progress=False)
    assert paraphrase(TEXTS[:3], _cfg(model_dir), 4, 1.0, seeds, progress=False) == beam

    sampled_cfg = _cfg(model_dir, sample=True, num_beams=1, top_p=1.0)
    batch = paraphrase(TEXTS[:3], sampled_cfg, 4, 1.0, seeds, progress=False)
    assert paraphrase(TEXTS[:3], sampled_cfg, 4, 1.0, seeds, progress=False) == batch
    alone = paraphrase(TEXTS[1:2], sampled_cfg, 4, 1.0, seeds[1:2], progress=False)
    assert alone == batch[1:2]
    assert all(len(a.split("\n")) == 4 for a in batch)
    other_seed = paraphrase(TEXTS[1:2], sampled_cfg, 4, 1.0, [99], progress=False)
    assert other_seed != alone  # the seed does reach the sampler


def test_batch_size_does_not_change_beam_search_answers(model_dir):
    one = paraphrase(TEXTS, _cfg(model_dir, batch_size=1), 3, 0.0, [0] * len(TEXTS), progress=False)
    four = paraphrase(TEXTS, _cfg(model_dir, batch_size=4), 3, 0.0, [0] * len(TEXTS), progress=False)
    assert one == four


def test_a_missing_or_empty_model_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"caption_text\.seq2seq\.path"):
        paraphrase(["a dog"], _cfg(tmp_path / "absent"), 2, 1.0, [0], progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"caption_text\.seq2seq\.path \(.*empty\)"):
        paraphrase(["a dog"], _cfg(empty), 2, 1.0, [0], progress=False)


def test_bad_calls_fail_before_loading_the_model(tmp_path):
    absent = tmp_path / "absent"  # loading would raise FileNotFoundError: these must come first
    with pytest.raises(ValueError, match=r"caption_text\.seq2seq\.num_beams \(3\) must be >= .*\(5\)"):
        paraphrase(["a dog"], _cfg(absent, num_beams=3), 5, 1.0, [0], progress=False)
    with pytest.raises(ValueError, match="1 texts but 2 seeds"):
        paraphrase(["a dog"], _cfg(absent), 2, 1.0, [0, 1], progress=False)
    with pytest.raises(ValueError, match=r"caption_text\.temperature must be > 0"):
        paraphrase(["a dog"], _cfg(absent, sample=True), 2, 0.0, [0], progress=False)
    assert paraphrase([], _cfg(absent), 2, 1.0, [], progress=False) == []


@pytest.mark.parametrize("field, value", [
    ("model", ""), ("path", ""), ("revision", ""), ("device", "gpu"), ("batch_size", 0), ("batch_size", True),
    ("num_beams", 0), ("max_input_tokens", 0), ("max_new_tokens", -1), ("sample", "yes"), ("top_p", 0.0),
    ("top_p", 1.5), ("torch_threads", -1), ("torch_threads", 1.5),
])
def test_bad_config_values_name_their_param(field, value):
    with pytest.raises(ValueError, match=rf"caption_text\.seq2seq\.{field} "):
        _cfg(**{"path": None, field: value})


def test_fingerprint_follows_the_weights(model_dir, tmp_path):
    fingerprint = model_fingerprint(_cfg(model_dir))
    assert fingerprint == model_fingerprint(_cfg(model_dir)) and len(fingerprint) == 64
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    assert model_fingerprint(_cfg(copy)) == fingerprint  # bytes, not the folder's name
    model = transformers.PegasusForConditionalGeneration.from_pretrained(copy)
    with torch.no_grad():
        model.model.shared.weight[5, 0] += 1.0
    model.save_pretrained(copy)
    assert model_fingerprint(_cfg(copy)) != fingerprint
    # Without a folder, the id and revision are the provenance.
    assert model_fingerprint(_cfg(None)) != model_fingerprint(_cfg(None, revision="abc123"))
    with pytest.raises(ValueError, match="no weights"):
        model_fingerprint(_cfg(tmp_path))
