"""Exact pairwise scoring of a caption set against a video gallery, in bounded memory.

Every (caption i, video j) score needs caption i to pool video j's frames, then a confidence MLP
per concept: there is no single embedding per item, so retrieval is a full pairwise pass. Two
implementations produce the same numbers:

``direct``: per tile, each pair's pooled video goes through the full confidence MLP
(:meth:`MacVR.score_encoded`); ~1.07 M MACs per pair at D=512, K=8, N=12.

``fast``: exact algebra on the same formula (not an approximation):
  * the first MLP layer is linear in its concatenated input, so
    W1 [e_t; e_av; e_at; e_v] = W1_t e_t + W1_at e_at (once per caption) + W1_av e_av (once per
    video) + W1_v e_v (per pair);
  * pooling and the concept split are linear, so W1_v e_v^k(i,j) = sum_n a_ijn (W1_v F'^k_jn):
    the per-frame projections P_jn = W1_v F'^k_jn are computed once per video and each pair only
    mixes N rows of them (N*K*H MACs instead of K*d*H -- cheaper whenever N < d);
  * cos needs ||e_v^k(i,j)||^2 = a^T G^k_j a with the per-video Gram G^k_j = F'^k_j F'^k_j^T,
    and the numerator <e_t^k(i), e_v^k(i,j)> = sum_n a_ijn <e_t^k(i), F'^k_jn>;
  * the masked pooling logits <T_i, F'_jn> / tau (-inf on padding) come from one GEMM of
    [T / tau, 1] with [F', mask bias].
  Per pair this leaves ~N*K*H (hidden layer) + ~2*N*D MACs, about 70 k at D=512, K=8, N=12.
  The hidden layer (K*H values per pair) is memory-bound, so it is tiled to stay cache-sized;
  one ``baddbmm`` per tile forms b1 + W1_t e_t + W1_at e_at + W1_av e_av + sum_n a_n P_n (the
  video-only term is folded into every frame's P_n, since the weights sum to 1).

``fused``: the fast form's algebra with its tail fused into one kernel per tile
(:mod:`pipeline.kernels`): for each pair and concept the K*H hidden pre-activations are formed,
passed through the ReLU and dotted with w2 in registers, never written to memory. Same numbers
as ``fast`` up to float rounding; it falls back to ``fast`` (one log line) where no kernel is
available (no C++ compiler on a CPU, no Triton on a GPU, half precision).

``pooled``: for a few captions against many videos (a search query, re-ranking a shortlist).
The fast form pays ~N*K*d*H MACs per *video* for the per-frame projections (3.1 M at D=512),
which only pays off over many captions. Here each pair's pooled video is formed explicitly (as
in ``direct``) but only the video slot of the first layer runs per pair (K*d*H = 262 k MACs);
the caption slots run once per caption and the visual-tag slot once per video: ~4x fewer MACs
per pair than ``direct`` and no per-video projections. Exact, like the others.

Memory is bounded by ``video_block`` (frames encoded and prepared at once) and ``text_block``
(captions prepared at once), whatever the gallery and query-set sizes; the output [Nt, Nv] can
be a preallocated array (e.g. a memory-mapped .npy). Speed: benchmarks/bench_scoring.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from pipeline.model.macvr import MacVR
from pipeline.model.pooling import masked_pool_softmax

ScoringMethod = Literal["fast", "direct", "fused", "pooled"]
SCORING_METHODS: tuple[str, ...] = ("fast", "direct", "fused", "pooled")

#: Tile and block sizes measured with benchmarks/bench_scoring.py (see benchmarks/README.md).
DEFAULT_TEXT_CHUNK = 16
DEFAULT_VIDEO_CHUNK = 4
DEFAULT_TEXT_BLOCK = 256
DEFAULT_VIDEO_BLOCK = 256
#: The direct form's tiles (the brief's reference: 16 x 16).
DIRECT_CHUNK = 16
#: The pooled form: videos per tile (its per-pair hidden layer is Q * this * K * H values).
DEFAULT_POOLED_VIDEO_CHUNK = 64
#: The fused form: captions per kernel block (their caption parts stay in L2 while one video's
#: rows stay in L1) and videos per kernel call (pooling weights and cosines are computed for all
#: captions x this many videos at once). Measured with benchmarks/bench_scoring.py --grid.
DEFAULT_FUSED_TEXT_CHUNK = 64
DEFAULT_FUSED_VIDEO_CHUNK = 16
#: On a GPU, videos per kernel call (per-call overhead dominates small calls; memory ~ 17 * this
#: * N * Q values for the pooling terms). Not measured here (no GPU): a starting point.
DEFAULT_FUSED_GPU_VIDEO_CHUNK = 256


@dataclass
class QuerySide:
    """Caption-only precomputation for ``fast_scores`` (Q captions), caption index innermost."""

    logit_text: torch.Tensor  # [D+1, Q] = [T / tau, 1]^T: one GEMM with VideoSide.logit_frames gives masked logits
    concepts: torch.Tensor    # e_t as [K, d, Q]
    norms: torch.Tensor       # ||e_t^k|| as [K, Q]
    hidden: torch.Tensor      # caption part of layer 1, W1_t e_t^k + W1_at e_at^k: [Q, K*H]

    def __len__(self) -> int:
        return self.hidden.shape[0]


@dataclass
class VideoSide:
    """Video-only precomputation for ``fast_scores`` (V videos of N frame slots)."""

    logit_frames: torch.Tensor  # [V*N, D+1] = [F', mask bias (0 or -inf)]
    concepts: torch.Tensor      # F'^k as [K, V*N, d]
    mask: torch.Tensor          # [V, N] bool
    proj: torch.Tensor          # [V, N(+1), K*H]: W1_v F'^k_n plus the video-only term b1 + W1_av e_av^k
                                # (folded into each frame, or appended as a row; see prepare_videos)
    gram: torch.Tensor          # [V, K*N, N]: rows (k, m) of G^k = F'^k F'^k^T

    def __len__(self) -> int:
        return self.mask.shape[0]


def _as_tensor(x, rows: slice, like: torch.Tensor) -> torch.Tensor:
    """Rows of a numpy array (memmaps included) or tensor, on ``like``'s device and dtype."""
    part = x[rows]
    if isinstance(part, np.ndarray):
        part = torch.from_numpy(np.ascontiguousarray(part))
    return part.to(device=like.device, dtype=torch.bool if part.dtype == torch.bool else like.dtype)


@torch.no_grad()
def prepare_queries(model: MacVR, text: torch.Tensor, tags_t: torch.Tensor | None = None) -> QuerySide:
    """Caption-side terms of the fast form: concepts, their norms and the caption part of layer 1."""
    cfg = model.config
    text = model.as_input(text, "text", (None, cfg.embed_dim))
    conf = model.confidence
    e_t = model.concept_split(text)  # [Q, K, d]
    hidden = conf.slot_partial("text", e_t)  # [Q, K, H]
    tags_t = model.tag_input(tags_t, cfg.use_textual_tags, "tags_t (textual tag sentences)", text.shape[0])
    if tags_t is not None:
        hidden = hidden + conf.slot_partial("tags_textual", model.concept_split(tags_t))
    logit_text = torch.cat([text / cfg.pool_temperature, text.new_ones(text.shape[0], 1)], dim=1)
    return QuerySide(logit_text=logit_text.t().contiguous(), concepts=e_t.permute(1, 2, 0).contiguous(),
                     norms=e_t.norm(dim=-1).t().contiguous(), hidden=hidden.flatten(1).contiguous())


@torch.no_grad()
def prepare_videos(model: MacVR, frames: torch.Tensor, mask: torch.Tensor,
                   tags_v: torch.Tensor | None = None) -> VideoSide:
    """Video-side terms of the fast form from encoded frames F' [V, N, D] (see encode_frames)."""
    cfg = model.config
    frames = model.as_input(frames, "encoded frames", (None, None, cfg.embed_dim))
    v, n, _ = frames.shape
    mask = mask.to(device=frames.device, dtype=torch.bool)
    conf = model.confidence
    fk = model.concept_split(frames)  # [V, N, K, d]
    proj = conf.slot_partial("video", fk)  # [V, N, K, H]
    video_row = conf.fc1.bias.expand(v, cfg.num_concepts, -1)  # [V, K, H]
    tags_v = model.tag_input(tags_v, cfg.use_visual_tags, "tags_v (visual tag sentences)", v)
    if tags_v is not None:
        video_row = video_row + conf.slot_partial("tags_visual", model.concept_split(tags_v))
    if cfg.pool_masking == "before_softmax":
        # The pooling weights sum to 1, so the video-only row folds into every frame's row
        # (in place: a fresh tensor of this size costs page faults, ~2x the add itself).
        proj = proj.add_(video_row[:, None]).flatten(2)  # [V, N, K*H]
        bias = torch.zeros_like(mask, dtype=frames.dtype).masked_fill_(~mask, float("-inf"))
    else:
        # Official masking: weights sum to < 1; the row rides along as an extra frame of weight 1.
        proj = torch.cat([proj, video_row[:, None]], dim=1).flatten(2)  # [V, N+1, K*H]
        bias = torch.zeros_like(mask, dtype=frames.dtype)
    gram = torch.einsum("vmkd,vnkd->vkmn", fk, fk).flatten(1, 2)  # [V, K*N, N]
    concepts = fk.permute(2, 0, 1, 3).reshape(cfg.num_concepts, v * n, cfg.concept_dim)
    logit_frames = torch.cat([frames, bias[..., None]], dim=-1).flatten(0, 1)
    return VideoSide(logit_frames=logit_frames, concepts=concepts, mask=mask, proj=proj.contiguous(),
                     gram=gram.contiguous())


def _pair_parts(model: MacVR, q: QuerySide, v: VideoSide, qs: slice, vs: slice,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cheap per-pair terms of videos ``vs`` x queries ``qs`` (~2 N D + K N^2 MACs per pair).

    a [J, N, I]: pooling weights; r [K, J, N, I] = <F'^k_jn, e_t^k(i)>; ga [J, K, N, I] = G^k_j a_ij.
    Per-pair tensors keep the caption index innermost, so the reductions over frames are
    vectorised across captions.
    """
    cfg = model.config
    k_ = cfg.num_concepts
    i, j, n = qs.stop - qs.start, vs.stop - vs.start, v.mask.shape[1]
    rows = slice(vs.start * n, vs.stop * n)
    # Masked logits <T_i, F'_jn> / tau (-inf on padding) in one GEMM, then pooling weights a[j, n, i].
    a = torch.softmax((v.logit_frames[rows] @ q.logit_text[:, qs]).view(j, n, i), dim=1)
    if cfg.pool_masking == "after_softmax":
        a = a * v.mask[vs, :, None]
    r = torch.bmm(v.concepts[:, rows], q.concepts[:, :, qs]).view(k_, j, n, i)
    ga = torch.bmm(v.gram[vs], a).view(j, k_, n, i)
    return a, r, ga


def _pair_terms(model: MacVR, q: QuerySide, v: VideoSide, qs: slice, vs: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooling weights a [J, N, I] and concept cosines [J, K, I] of videos ``vs`` x queries ``qs``."""
    a, r, ga = _pair_parts(model, q, v, qs, vs)
    num = (r * a).sum(2)  # sum_n a_ijn <F'^k_jn, e_t^k(i)>: [K, J, I]
    sq = (ga * a[:, None]).sum(2)  # a^T G^k a = ||e_v^k||^2: [J, K, I]
    cos = num.transpose(0, 1).div_(sq.clamp_min_(0).sqrt_().mul_(q.norms[:, qs]))  # [J, K, I]
    return a, cos


def _fast_block(model: MacVR, q: QuerySide, v: VideoSide, qs: slice, vs: slice, text_chunk: int,
                buffer: torch.Tensor) -> torch.Tensor:
    """Scores [J, I] of videos ``vs`` against queries ``qs`` with the split algebra.

    The cheap terms (pooling weights, cosines: ~8 k MACs per pair) are computed for the whole
    block; only the hidden layer (K*H values per pair) is tiled ``text_chunk`` captions at a
    time, into ``buffer``, so that it stays cache-resident.
    """
    cfg = model.config
    k_, h_ = cfg.num_concepts, cfg.confidence_hidden
    i, j, n = qs.stop - qs.start, vs.stop - vs.start, v.mask.shape[1]
    a, cos = _pair_terms(model, q, v, qs, vs)
    a_t = a.transpose(1, 2)  # [J, I, N] (a view: BLAS reads it transposed)
    if v.proj.shape[1] > n:  # the video-only term is an extra frame of weight 1
        a_t = torch.cat([a_t, a_t.new_ones(j, i, 1)], dim=-1)
    fc2 = model.confidence.fc2
    w2, proj, caption_part = fc2.weight[0], v.proj[vs], q.hidden[qs]
    w = cos.new_empty(j, i, k_)
    for t0 in range(0, i, text_chunk):
        t1 = min(t0 + text_chunk, i)
        hidden = buffer[: j * (t1 - t0) * k_ * h_].view(j, t1 - t0, k_ * h_)
        # b1 + W1_t e_t + W1_at e_at + W1_av e_av + sum_n a_n W1_v F'_n, then ReLU: [J, It, K*H]
        torch.baddbmm(caption_part[t0:t1], a_t[:, t0:t1], proj, out=hidden).relu_()
        w[:, t0:t1] = hidden.view(j, t1 - t0, k_, h_) @ w2
    return (w.add_(fc2.bias).transpose(1, 2) * cos).sum(1)


def fast_scores(model: MacVR, queries: QuerySide, videos: VideoSide,
                text_chunk: int = DEFAULT_TEXT_CHUNK, video_chunk: int = DEFAULT_VIDEO_CHUNK) -> torch.Tensor:
    """Scores [Q, V] of prepared queries and videos (exact; see the module docstring).

    All Q queries x ``video_chunk`` videos share one pass of the cheap per-pair terms (memory
    ~ Q * video_chunk * N * K values); the hidden layer runs in ``text_chunk`` x ``video_chunk``
    tiles (text_chunk * video_chunk * K * H values).
    """
    if text_chunk <= 0 or video_chunk <= 0:
        raise ValueError(f"chunk sizes must be > 0, got text_chunk={text_chunk}, video_chunk={video_chunk}")
    nq, nv = len(queries), len(videos)
    out = queries.hidden.new_empty(nv, nq)
    # One reused tile buffer: a fresh multi-MB allocation per tile costs page faults.
    buffer = queries.hidden.new_empty(video_chunk * videos.proj.shape[2] * text_chunk)
    with torch.no_grad():
        for v0 in range(0, nv, video_chunk):
            vs = slice(v0, min(v0 + video_chunk, nv))
            out[vs] = _fast_block(model, queries, videos, slice(0, nq), vs, text_chunk, buffer)
    return out.t().contiguous()


def fused_scores(model: MacVR, queries: QuerySide, videos: VideoSide, text_chunk: int | None = None,
                 video_chunk: int | None = None) -> torch.Tensor:
    """Scores [Q, V] of prepared queries and videos by the fused kernel (see :mod:`pipeline.kernels`).

    Per ``video_chunk`` videos, the pooling weights and the cosines' GEMMs for all Q queries come
    from :func:`_pair_parts`; the kernel then forms each pair's cosines, hidden layer, ReLU and
    second layer in registers, ``text_chunk`` captions per cache block. Falls back to :func:`fast_scores` (with
    its default tiles unless chunks were given) where no kernel is available.
    """
    for name, value in (("text_chunk", text_chunk), ("video_chunk", video_chunk)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    from pipeline.kernels import fused_kernel

    kernel = fused_kernel(queries.hidden.device, queries.hidden.dtype)
    if kernel is None:
        return fast_scores(model, queries, videos, text_chunk or DEFAULT_TEXT_CHUNK,
                           video_chunk or DEFAULT_VIDEO_CHUNK)
    text_chunk = text_chunk or DEFAULT_FUSED_TEXT_CHUNK
    on_gpu = queries.hidden.device.type != "cpu"
    video_chunk = video_chunk or (DEFAULT_FUSED_GPU_VIDEO_CHUNK if on_gpu else DEFAULT_FUSED_VIDEO_CHUNK)
    nq, nv, n = len(queries), len(videos), videos.mask.shape[1]
    extra_row = videos.proj.shape[1] > n  # after_softmax: the video-only term as a row of weight 1
    fc2 = model.confidence.fc2
    w2, b2 = fc2.weight[0].detach(), fc2.bias.detach().item()
    out = queries.hidden.new_empty(nv, nq)
    with torch.no_grad():
        for v0 in range(0, nv, video_chunk):
            vs = slice(v0, min(v0 + video_chunk, nv))
            a, r, ga = _pair_parts(model, queries, videos, slice(0, nq), vs)
            out[vs] = kernel(a, videos.mask[vs], extra_row, videos.proj[vs], queries.hidden, w2, b2, r, ga,
                             queries.norms, text_chunk)
    return out.t().contiguous()


#: Up to this many captions, the pooled form runs the visual-tag slot per pair, fused into the
#: video slot's GEMM (one GEMM of inner width 2d instead of two of width d, one pass fewer over
#: the hidden layer: ~30% faster for one query); beyond, once per video.
POOLED_CONCAT_MAX_CAPTIONS = 4


@torch.no_grad()
def pooled_scores(model: MacVR, text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor,
                  tags_v: torch.Tensor | None = None, tags_t: torch.Tensor | None = None,
                  video_chunk: int = DEFAULT_POOLED_VIDEO_CHUNK) -> torch.Tensor:
    """Scores [Q, V] of few captions against encoded frames F' [V, N, D] (see the module docstring).

    Per pair: pooling weights and the pooled video (as the direct form), its concepts, and the
    video slot of the first layer; the caption slots (:func:`prepare_queries`) come once per
    caption. Memory ~ Q * video_chunk * K * H values.
    """
    if video_chunk <= 0:
        raise ValueError(f"video_chunk must be > 0, got {video_chunk}")
    cfg = model.config
    frames = model.as_input(frames, "encoded frames", (None, None, cfg.embed_dim))
    nv, n, k_, h_ = frames.shape[0], frames.shape[1], cfg.num_concepts, cfg.confidence_hidden
    mask = mask.to(device=frames.device, dtype=torch.bool)
    text = model.as_input(text, "text", (None, cfg.embed_dim))
    nq = text.shape[0]
    queries = prepare_queries(model, text, tags_t)
    conf = model.confidence
    caption_part = queries.hidden.view(nq, k_, h_) + conf.fc1.bias  # [Q, K, H]
    e_t, t_norm = queries.concepts.permute(2, 0, 1), queries.norms.t()  # [Q, K, d], [Q, K]
    tags_v = model.tag_input(tags_v, cfg.use_visual_tags, "tags_v (visual tag sentences)", nv)
    e_av = None if tags_v is None else model.concept_split(tags_v)  # [V, K, d]
    concat = e_av is not None and nq <= POOLED_CONCAT_MAX_CAPTIONS
    w1_v = conf.slot_weight("video").t()  # [d, H]
    if concat:
        w1_v = torch.cat([w1_v, conf.slot_weight("tags_visual").t()], dim=0)  # [2d, H]
    w2, b2 = conf.fc2.weight[0], conf.fc2.bias
    text_scaled = text.t() / cfg.pool_temperature  # [D, Q]
    out = text.new_empty(nq, nv)
    for v0 in range(0, nv, video_chunk):
        vs = slice(v0, min(v0 + video_chunk, nv))
        j, f = vs.stop - vs.start, frames[vs]
        logits = (f.reshape(j * n, -1) @ text_scaled).view(j, n, nq).permute(2, 0, 1)  # [Q, J, N]
        a = masked_pool_softmax(logits, mask[vs], cfg.pool_masking)
        e_v = model.concept_split(torch.bmm(a.transpose(0, 1), f))  # pooled videos' concepts: [J, Q, K, d]
        if concat:
            x = torch.cat([e_v, e_av[vs, None].expand(j, nq, k_, -1)], dim=-1)  # [J, Q, K, 2d]
            hidden = (x @ w1_v).add_(caption_part)
        else:
            hidden = (e_v @ w1_v).add_(caption_part)
            if e_av is not None:
                hidden.add_(conf.slot_partial("tags_visual", e_av[vs])[:, None])
        w = (hidden.relu_() @ w2).add_(b2)  # [J, Q, K]
        cos = (e_t * e_v).sum(-1).div_(t_norm * e_v.norm(dim=-1))
        out[:, vs] = (w * cos).sum(-1).t()
    return out


def direct_scores(model: MacVR, text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor,
                  tags_v: torch.Tensor | None = None, tags_t: torch.Tensor | None = None,
                  text_chunk: int = DIRECT_CHUNK, video_chunk: int = DIRECT_CHUNK) -> torch.Tensor:
    """Scores [Q, V] of captions against encoded frames F', each pair through the full MLP.

    The reference for ``fast_scores``; memory ~ text_chunk * video_chunk * K * (4d + H) values.
    """
    if text_chunk <= 0 or video_chunk <= 0:
        raise ValueError(f"chunk sizes must be > 0, got text_chunk={text_chunk}, video_chunk={video_chunk}")
    nq, nv = text.shape[0], frames.shape[0]
    out = torch.empty(nq, nv, dtype=model.logit_scale.dtype, device=model.logit_scale.device)
    with torch.no_grad():
        for v0 in range(0, nv, video_chunk):
            vs = slice(v0, min(v0 + video_chunk, nv))
            for q0 in range(0, nq, text_chunk):
                qs = slice(q0, min(q0 + text_chunk, nq))
                out[qs, vs] = model.score_encoded(
                    text[qs], frames[vs], mask[vs],
                    None if tags_v is None else tags_v[vs],
                    None if tags_t is None else tags_t[qs]).similarity
    return out


def _check_rows(name: str, x, rows: int) -> None:
    if x is not None and len(x) != rows:
        raise ValueError(f"{name}: expected {rows} rows, got {len(x)}")


def score_matrix(model: MacVR, text, frames, mask, tags_v=None, tags_t=None, *,
                 method: ScoringMethod = "fast",
                 text_chunk: int | None = None, video_chunk: int | None = None,
                 text_block: int = DEFAULT_TEXT_BLOCK, video_block: int = DEFAULT_VIDEO_BLOCK,
                 out: np.ndarray | torch.Tensor | None = None, progress: bool = False):
    """S [Nt, Nv] of captions text [Nt, D] (+ tags_t [Nt, D]) against videos frames [Nv, N, D],
    mask [Nv, N] (+ tags_v [Nv, D]); inputs may be tensors or numpy arrays (memmaps, fp16).

    Memory is bounded by the blocks: frames are encoded (temporal transformer, once per video)
    and prepared ``video_block`` videos at a time, captions ``text_block`` at a time; tiles are
    ``text_chunk`` x ``video_chunk`` pairs (None: the method's measured default, see the
    ``DEFAULT_*`` constants; for ``fused`` they are the kernel's caption block and the videos
    per kernel call). ``method``: ``fast``, ``fused`` (same numbers, faster where its kernel
    exists, else ``fast``), ``pooled`` (for a few captions: search queries, re-ranking) or
    ``direct`` (the per-pair reference). Results
    go into ``out`` when given (a [Nt, Nv] array or tensor, e.g. a memory-mapped .npy) and are
    returned; otherwise a new CPU tensor in the model's dtype is returned. Computation runs on
    the model's device and dtype.
    """
    if method not in SCORING_METHODS:
        raise ValueError(f"unknown scoring method {method!r} (expected one of {', '.join(SCORING_METHODS)})")
    for name, value in (("text_chunk", text_chunk), ("video_chunk", video_chunk),
                        ("text_block", text_block), ("video_block", video_block)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    nt, nv = len(text), len(frames)
    _check_rows("frame mask", mask, nv)
    _check_rows("tags_v", tags_v, nv)
    _check_rows("tags_t", tags_t, nt)
    if out is None:
        out = torch.empty(nt, nv, dtype=model.logit_scale.dtype)
    elif tuple(out.shape) != (nt, nv):
        raise ValueError(f"out: expected shape {(nt, nv)}, got {tuple(out.shape)}")
    if method == "direct":
        text_chunk, video_chunk = text_chunk or DIRECT_CHUNK, video_chunk or DIRECT_CHUNK
    elif method == "fast":
        text_chunk, video_chunk = text_chunk or DEFAULT_TEXT_CHUNK, video_chunk or DEFAULT_VIDEO_CHUNK
    elif method == "pooled":
        video_chunk = video_chunk or DEFAULT_POOLED_VIDEO_CHUNK
    like = model.logit_scale.detach()
    v_blocks = range(0, nv, video_block)
    t_blocks = range(0, nt, text_block)
    bar = tqdm(total=len(v_blocks) * len(t_blocks), desc=f"scoring {nt}x{nv} ({method})",
               unit="block", disable=not progress)
    with torch.no_grad():
        for v0 in v_blocks:
            vs = slice(v0, min(v0 + video_block, nv))
            block_mask = _as_tensor(mask, vs, like).bool()
            encoded = model.encode_frames(_as_tensor(frames, vs, like), block_mask)
            block_tags_v = None if tags_v is None or not model.config.use_visual_tags else _as_tensor(tags_v, vs, like)
            videos = (prepare_videos(model, encoded, block_mask, block_tags_v) if method in ("fast", "fused")
                      else None)
            for t0 in t_blocks:
                ts = slice(t0, min(t0 + text_block, nt))
                block_text = _as_tensor(text, ts, like)
                block_tags_t = (None if tags_t is None or not model.config.use_textual_tags
                                else _as_tensor(tags_t, ts, like))
                if method == "fused":
                    scores = fused_scores(model, prepare_queries(model, block_text, block_tags_t), videos,
                                          text_chunk, video_chunk)
                elif method == "pooled":
                    scores = pooled_scores(model, block_text, encoded, block_mask, block_tags_v, block_tags_t,
                                           video_chunk)
                elif videos is not None:
                    scores = fast_scores(model, prepare_queries(model, block_text, block_tags_t), videos,
                                         text_chunk, video_chunk)
                else:
                    scores = direct_scores(model, block_text, encoded, block_mask, block_tags_v, block_tags_t,
                                           text_chunk, video_chunk)
                if isinstance(out, np.ndarray):
                    out[ts, vs] = scores.cpu().numpy()
                else:
                    out[ts, vs] = scores.to(out.device, out.dtype)
                bar.update()
    bar.close()
    return out
