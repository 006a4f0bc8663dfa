"""Evaluation: codec quality metrics, token evaluations, end-to-end AudioLM evaluation, linguistic
probes of the semantic LM (`segue.eval.probes`)."""
