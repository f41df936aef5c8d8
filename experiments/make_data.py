"""Generate an experiment dataset: python experiments/make_data.py NAME '{"prepare.synthetic.num_videos": 1200}'"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments.common import make_dataset  # noqa: E402

d, t = make_dataset(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
print(d, json.dumps(t))
