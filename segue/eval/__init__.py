"""Evaluation: codec quality metrics, token evaluations, end-to-end AudioLM evaluation."""
