"""The MAC-VR authors' published artifacts: their tags and their trained checkpoints.

- :mod:`.config`: ``params.yaml: released`` (where the files are, which tag format).
- :mod:`.tags`: the annotation files *with tags* of adrianofragomeni/MAC-VR-code's ``data``
  archive (MSR-VTT CSVs, DiDeMo / ActivityNet ``all_concepts_llama3.json``), matched to the
  prepared videos and captions; and the reverse (export the project's tags in those formats).
- :mod:`.checkpoint`: the official ``pytorch_model.bin`` state dicts (MAC-VR's and DiCoSA's model
  class) mapped onto the project's backbone and head, refusing any key it cannot place.
- :mod:`.paper`: the paper's Tab. 2, as data, for the tables' published-vs-measured columns.

Nothing here is imported by the package root: each stage imports the module it needs.
"""
