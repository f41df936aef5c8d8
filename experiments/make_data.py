"""Generate an experiment dataset: python -m experiments.make_data NAME '{"prepare.datasets.synthetic.num_videos": 1200}'"""
import json
import sys

from experiments.common import make_dataset, setup


def main() -> None:
    setup()
    d, t = make_dataset(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
    print(d, json.dumps(t))


if __name__ == "__main__":
    main()
