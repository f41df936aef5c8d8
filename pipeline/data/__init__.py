"""Datasets: adapters that turn annotations into the shared videos/captions tables.

``pipeline.data.prepare.prepare`` is the stage's entry; ``pipeline.data.schema`` holds the table
contract and the ``read_videos``/``read_captions`` helpers later stages use to load the tables.
Nothing is imported here, so reading the schema does not pull in every adapter.
"""
