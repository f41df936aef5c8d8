"""Does a trained MAC-VR head use its tags? Diagnostics of w_ijk on the test split.

python -m experiments.diag_confidence RUN_DIR FEATURES_DIR [--name X]

RUN_DIR holds model.pt (experiments/data/<d>/runs/<name>/macvr). Reports, t2v on the test split:
  R@1/R@5 of the model (direct form), of sum_k w cos with w averaged over the gallery (per caption
  and concept: what the MLP adds by varying with the video), of plain sum_k cos (w = 1), and with
  the visual tags of each video swapped for another test video's (derangement): the tags' effect.
  w statistics: matched vs unmatched mean w, std of w across videos for a fixed caption (mean over
  captions and concepts) against its mean, and the same for cos.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from experiments.common import log_result, recall, setup
from pipeline.evaluation.items import select_rows
from pipeline.evaluation.sets import cached_sets
from pipeline.features.store import load_features
from pipeline.features.tag_control import derangement
from pipeline.train import checkpoint


@torch.no_grad()
def pair_scores(model, text, frames, mask, tags_v, tags_t, chunk=100):
    enc = model.encode_frames(frames, mask)
    ws, coss = [], []
    for s in range(0, len(text), chunk):
        sl = slice(s, s + chunk)
        p = model.score_encoded(text[sl], enc, mask, tags_v, None if tags_t is None else tags_t[sl])
        ws.append(p.confidence)
        coss.append(p.concept_cosine)
    return torch.cat(ws).numpy(), torch.cat(coss).numpy()  # [C, V, K]


def main() -> None:
    setup()
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("features")
    ap.add_argument("--name", default="")
    args = ap.parse_args()
    path = Path(args.run) / "model.pt"
    model = checkpoint.head_from(checkpoint.load(path), str(path))
    store = load_features(args.features)
    rows = select_rows(store.videos, store.captions_index, 0)
    sets = cached_sets(store, rows)
    t, v = sets.test_text, sets.test_videos
    text = torch.as_tensor(np.asarray(t.text, dtype=np.float32))
    tags_t = torch.as_tensor(np.asarray(t.tags, dtype=np.float32))
    frames = torch.as_tensor(np.asarray(v.frames, dtype=np.float32))
    mask = torch.as_tensor(np.asarray(v.mask))
    tags_v = torch.as_tensor(np.asarray(v.tags, dtype=np.float32))
    cv = rows.caption_video
    cfg = model.config
    tv = tags_v if cfg.use_visual_tags else None
    tt = tags_t if cfg.use_textual_tags else None
    w, cos = pair_scores(model, text, frames, mask, tv, tt)
    out = {"name": args.name, "kind": "diag_confidence", "run": args.run, "features": Path(args.features).name}

    def r(sim, key):
        m = recall(sim, cv)
        out[f"{key}_R1"], out[f"{key}_R5"] = round(m["t2v_R1"], 1), round(m["t2v_R5"], 1)

    r((w * cos).sum(-1), "model")
    r((w.mean(1, keepdims=True) * cos).sum(-1), "w_gallery_mean")
    r(cos.sum(-1), "w_one")
    if tv is not None:
        perm = derangement(len(tags_v), np.random.default_rng(0))
        w2, cos2 = pair_scores(model, text, frames, mask, tags_v[perm], tt)
        r((w2 * cos2).sum(-1), "visual_tags_swapped")
        # w variation explained by the visual tags: swap changes w by how much vs its spread?
        out["w_change_on_swap_over_w_std"] = round(float(np.abs(w2 - w).mean() / w.std(axis=1).mean()), 3)
    matched = np.zeros(w.shape[:2], bool)
    matched[np.arange(len(cv)), cv] = True
    wm = w.mean(-1)
    out["w_matched_mean"] = round(float(wm[matched].mean()), 4)
    out["w_unmatched_mean"] = round(float(wm[~matched].mean()), 4)
    out["w_mean"] = round(float(w.mean()), 4)
    out["w_std_over_videos"] = round(float(w.std(axis=1).mean()), 4)  # fixed caption, concept
    out["w_std_over_captions"] = round(float(w.std(axis=0).mean()), 4)  # fixed video, concept
    out["cos_mean"] = round(float(cos.mean()), 4)
    out["cos_std_over_videos"] = round(float(cos.std(axis=1).mean()), 4)
    # How often is the matched video's w above the caption's median w (chance 0.5)?
    out["w_matched_above_median"] = round(float((wm[matched] > np.median(wm, axis=1)).mean()), 3)
    print(out, flush=True)
    log_result(out)


if __name__ == "__main__":
    main()
