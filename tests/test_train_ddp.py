"""The DDP path on CPU: two gloo processes (torch.multiprocessing.spawn) against one process.

- The gradient of the all-gathered loss, after DDP's averaging, equals the single-process
  gradient of the same loss on the whole batch (so the autograd gather is right).
- Both ranks hold identical weights after training steps.
- ``train()`` under two processes ends with the weights of a single-process run (the global
  batches hold the same pairs; only their order inside a batch differs, which the losses ignore).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from pipeline.model import MacVR
from pipeline.train import loop
from pipeline.train.data import CachedFeatureSet, cached_pairs
from pipeline.train.distributed import all_gather_with_grad, init_distributed
from pipeline.train.livelog import LiveLog
from pipeline.train.loop import TrainInputs, train
from pipeline.train.trainable import Trainable
from pipeline.text import TextConfig
from tests.test_train_common import make_features, tiny_config, tiny_loss, tiny_model

# Two fresh interpreters import torch + clip (~10 s each on a busy 2-core box).
pytestmark = pytest.mark.slow

WORLD = 2
GRAD_BATCH = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, features: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    out_dir = Path(out)
    ctx = init_distributed("cpu")
    assert ctx.distributed and ctx.rank == rank
    config = tiny_config(epochs=2, batch_size=8)

    # 1. Gradient of the gathered loss through DDP, each rank holding half of a fixed batch.
    torch.manual_seed(config.seed)
    trainable = Trainable(MacVR(tiny_model()), None, tiny_loss())
    ddp = torch.nn.parallel.DistributedDataParallel(trainable)
    ds = CachedFeatureSet(features, cached_pairs(features), config.seed)
    full = ds.fixed_batch(list(range(GRAD_BATCH)))
    half = GRAD_BATCH // WORLD
    shard = {k: v[rank * half:(rank + 1) * half] for k, v in full.items()}
    terms = ddp(shard)
    terms["total"].backward()
    torch.save({"loss": {k: v.detach() for k, v in terms.items()},
                "grads": {n: p.grad.clone() for n, p in trainable.named_parameters()}},
               out_dir / f"grads_{rank}.pt")

    # Integer tensors gather too (no autograd), in rank order.
    gathered = all_gather_with_grad(torch.tensor([rank, rank]))
    assert gathered.tolist() == [0, 0, 1, 1]

    # 2. Identical weights on both ranks after an epoch of DDP steps.
    run = loop._build(config, TextConfig(max_words=32), "macvr", TrainInputs(features=Path(features)), ctx)
    model = torch.nn.parallel.DistributedDataParallel(run.trainable)
    loop._run_epoch(run, model, 0, 0, LiveLog(None))
    torch.save(run.trainable.head.state_dict(), out_dir / f"weights_{rank}.pt")

    # 3. The real entry point (it leaves the process group at the end).
    train(config, "macvr", TrainInputs(features=Path(features)), out_dir / "ddp_run", live_dir=None)


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    features = make_features(root / "features")
    mp.spawn(_worker, args=(_free_port(), str(features), str(root)), nprocs=WORLD, join=True)
    return root, features


def test_gathered_loss_gradient_matches_single_process_full_batch(ddp_results):
    root, features = ddp_results
    config = tiny_config(epochs=2, batch_size=8)
    torch.manual_seed(config.seed)
    single = Trainable(MacVR(tiny_model()), None, tiny_loss())
    ds = CachedFeatureSet(features, cached_pairs(features), config.seed)
    terms = single(ds.fixed_batch(list(range(GRAD_BATCH))))
    terms["total"].backward()
    for rank in range(WORLD):
        got = torch.load(root / f"grads_{rank}.pt", weights_only=True)
        for k, v in terms.items():
            torch.testing.assert_close(got["loss"][k], v.detach(), rtol=1e-5, atol=1e-6)
        for name, p in single.named_parameters():
            # every parameter learns, the logit scale too: the loss does not clamp it at ln 100
            assert got["grads"][name].abs().sum() > 0, name
            torch.testing.assert_close(got["grads"][name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_ranks_end_with_identical_weights(ddp_results):
    root, _ = ddp_results
    a = torch.load(root / "weights_0.pt", weights_only=True)
    b = torch.load(root / "weights_1.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_two_process_training_matches_one_process(ddp_results, tmp_path):
    root, features = ddp_results
    ddp_model = torch.load(root / "ddp_run" / "model.pt", weights_only=True)
    assert ddp_model["world_size"] == 2
    assert not (root / "ddp_run" / "last.pt").exists()
    train(tiny_config(epochs=2, batch_size=8), "macvr", TrainInputs(features=features), tmp_path, live_dir=None)
    one = torch.load(tmp_path / "model.pt", weights_only=True)
    assert one["global_step"] == ddp_model["global_step"]
    for k, v in one["model"].items():
        torch.testing.assert_close(ddp_model["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)
