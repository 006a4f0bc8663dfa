"""Stub `fairseq` for the audiolm-pytorch baseline venv (bench/_audiolm_pytorch_worker.py).

fairseq 0.12.2 does not import on Python 3.11, and `import audiolm_pytorch` imports it for HuBERT
(unused here: the benchmark trains only its SoundStream). Never installed: the worker puts
bench/_stubs on sys.path.
"""
