"""`segue recipe` under torchrun, 2 nodes x 2 processes simulated on this machine (two torchrun
launchers, c10d rendezvous on 127.0.0.1, gloo, one thread each): the smoke recipe end to end on a
folder of synthetic audio, its token shards against a 1-process tokenize of the same models, and
a rank killed mid-training that stops the job cleanly, then a rerun that resumes and finishes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from segue.recipes import DONE_NAME, RECIPES, STARTED_NAME
from segue.train.checkpoint import list_checkpoints, load_latest, verify_checkpoint
from tests.conftest import write

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
#: The smoke recipe on the synthetic folder, without the e2e evaluation (Whisper's load).
ARGS = ["--group", "parent", "--set", "evaluate.e2e=false"]
TRAININGS = ("codec", "semantic/it1", "semantic/it2", "lm_semantic", "lm_coarse", "lm_fine",
             "soundstorm")  # fmt: skip

pytestmark = pytest.mark.distributed


def synthetic_audio(root: Path) -> Path:
    """6 "speakers" x 4 files of 3 s (gliding harmonic tones, a little noise): enough train files
    for a batch of 2 on each of 4 processes, and whole speakers held out for valid and test."""
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 16000
    for group in range(6):
        for i in range(4):
            freq = (120 + 40 * group) * (1 + 0.3 * np.sin(2 * np.pi * (0.5 + 0.2 * i) * t))
            phase = 2 * np.pi * np.cumsum(freq) / 16000
            envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + i)
            audio = 0.3 * envelope * (np.sin(phase) + 0.5 * np.sin(2 * phase))
            audio += 0.02 * rng.standard_normal(t.size)
            write(root / f"spk{group}" / f"utt{i}.flac", audio.astype(np.float32))
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(out: Path, *args: str, tag: str = "") -> list[subprocess.Popen]:
    """Two torchrun launchers (node 0 and node 1), 2 processes each, running `segue recipe`;
    each launcher's output goes to OUT{tag}.node{N}.log."""
    port, procs = free_port(), []
    for node in (0, 1):  # --node_rank is ignored by c10d, which hands out the ranks
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
            "--nproc_per_node", "2", "--node_rank", str(node), "--rdzv_backend", "c10d",
            "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", f"test-{port}",
            "-m", "segue.cli", "recipe", "smoke", "--out", str(out), *args,
        ]  # fmt: skip
        with open(f"{out}{tag}.node{node}.log", "w") as log:  # the child keeps its own copy
            procs.append(
                subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT)
            )
    return procs


def finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[int]:
    deadline = time.monotonic() + timeout
    try:
        return [proc.wait(timeout=max(1.0, deadline - time.monotonic())) for proc in procs]
    finally:
        for proc in procs:  # a hung launcher: stop it (and its workers) before failing
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)


def logs(out: Path, tag: str = "") -> str:
    return "".join(Path(f"{out}{tag}.node{node}.log").read_text() for node in (0, 1))


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> Path:
    """OUT of the smoke recipe run by 2 torchrun launchers x 2 processes."""
    root = tmp_path_factory.mktemp("torchrun")
    audio = synthetic_audio(root / "audio")
    out = root / "multi"
    codes = finish(launch(out, "--data", str(audio), *ARGS))
    assert codes == [0, 0], logs(out)[-6000:]
    return out


def test_two_nodes_of_two_processes_run_the_whole_recipe(multi):
    from segue.pipeline import AudioLM

    steps = RECIPES["smoke"].step_names
    assert sorted(p.parent.name for p in multi.glob(f"*/{DONE_NAME}")) == sorted(steps)
    # c10d hands out the ranks: rank 0 is on either launcher
    main, other = sorted((Path(f"{multi}.node{n}.log").read_text() for n in (0, 1)),
                         key=lambda text: "recipe smoke ->" not in text)  # fmt: skip
    assert main.count(" done in ") == len(steps)  # rank 0 logs each step once...
    assert " running" not in other and "bundle:" not in other  # ...the other ranks never
    for run in TRAININGS:  # every training was one DDP job of the 4 processes
        state = load_latest(multi / run / "checkpoints").objects["state"]
        assert state["world_size"] == 4 and len(state["rng"]) == 4, run
    for kind in ("semantic", "acoustic"):  # tokenizing was split by rank, then merged
        shards = multi / "tokenize" / kind
        assert json.loads((shards / "meta.json").read_text())["world_size"] == 4
        assert sorted(p.name for p in shards.glob("index.r*.jsonl")) == [
            f"index.r{rank}.jsonl" for rank in range(4)
        ]
    numbers = json.loads((multi / "tokenize" / DONE_NAME).read_text())["numbers"]
    assert numbers["semantic"]["utterances"] == numbers["acoustic"]["utterances"] == 24
    assert AudioLM.from_pretrained(multi / "bundle").info == {"recipe": "smoke"}


def test_tokens_split_by_rank_match_one_process(multi):
    """The same codec and tokenizer, tokenizing in 1 process: the same tokens for every file.
    (In a child process: tokenizing under inference mode leaves cached feature tensors that a
    later training in the same process could not use.)"""
    from segue.data.shards import TokenShards

    single = multi.parent / "single"
    for step in ("corpus", "codec", "codec_decoder", "semantic"):
        shutil.copytree(multi / step, single / step)
    argv = ["recipe", "smoke", "--out", str(single), "--data", str(multi.parent / "audio")]
    command = [sys.executable, "-m", "segue.cli", *argv, *ARGS, "--until", "tokenize"]
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, check=False)
    printed = done.stdout
    assert done.returncode == 0, done.stderr[-4000:]
    assert printed.count("skipped (done)") == 4 and "[5/11] tokenize      done" in printed
    for kind in ("semantic", "acoustic"):
        one, four = TokenShards(single / "tokenize" / kind), TokenShards(multi / "tokenize" / kind)
        assert one.meta["world_size"] == 1 and len(one) == len(four) == 24
        assert [e.key for e in one.entries] == [e.key for e in four.entries]
        for i in range(len(one)):
            np.testing.assert_array_equal(one.tokens(i), four.tokens(i))


def test_a_killed_rank_stops_the_job_and_the_rerun_resumes(multi):
    """SIGKILL to a worker of node 1 during lm_semantic's training: both launchers exit non-zero,
    no DONE marker, only complete checkpoints; the same command again resumes from the newest
    checkpoint and finishes."""
    out = multi.parent / "killed"
    later = shutil.ignore_patterns("lm_*", "soundstorm", "evaluate", "bundle")
    shutil.copytree(multi, out, ignore=later)  # corpus, models and tokens done: lm_semantic new
    run = out / "lm_semantic"
    args = ["--data", str(multi.parent / "audio"), *ARGS, "--until", "lm_semantic",
            "--set", "lm_semantic.optim.max_steps=25",
            "--set", "lm_semantic.train.checkpoint_every=5"]  # fmt: skip
    procs = launch(out, *args, tag=".killed")
    deadline = time.monotonic() + 240
    while not list_checkpoints(run / "checkpoints"):
        alive = all(p.poll() is None for p in procs)
        assert time.monotonic() < deadline and alive, logs(out, ".killed")
        time.sleep(0.05)
    workers = children(procs[1].pid)
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    codes = finish(procs)
    assert all(code != 0 for code in codes), (codes, logs(out, ".killed")[-4000:])
    assert (run / STARTED_NAME).is_file() and not (run / DONE_NAME).exists()
    saved = sorted((run / "checkpoints").glob("step_*"))  # every step folder is complete
    assert saved and all(verify_checkpoint(path)["step"] >= 5 for path in saved)
    killed_at = load_latest(run / "checkpoints").step
    assert 5 <= killed_at < 25

    codes = finish(launch(out, *args))  # the same command: resume the started step
    text = logs(out)
    assert codes == [0, 0], text[-4000:]
    assert "[6/11] lm_semantic   resuming" in text
    assert "resumed from" in text and f"at step {killed_at}" in text.split("resumed from")[1]
    assert load_latest(run / "checkpoints").step == 25
    assert json.loads((run / DONE_NAME).read_text())["numbers"]["steps"] == 25


def test_a_failing_rank_0_step_stops_every_rank(tmp_path):
    """The corpus step fails on rank 0 (nothing readable): the ranks waiting for it are told and
    stop too, at once; no rank is left waiting on a barrier."""
    empty = tmp_path / "audio" / "spk"
    empty.mkdir(parents=True)
    (empty / "a.wav").write_bytes(b"")
    out = tmp_path / "run"
    start = time.monotonic()
    codes = finish(launch(out, "--data", str(empty.parent), *ARGS), timeout=120)
    assert all(code != 0 for code in codes), logs(out)[-4000:]
    assert "no readable audio file" in logs(out)
    assert not (out / "corpus" / DONE_NAME).exists()
    assert time.monotonic() - start < 100
