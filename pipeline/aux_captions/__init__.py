"""Auxiliary captions (paper Tab. 7, Appx. G): visual captions and paraphrases in place of tags."""
