"""Start-up: a command imports only what it needs. Parsing `segue continue` used to import
scipy.signal through the training code's augmentation (0.7 s of a 6 s continuation)."""

import subprocess
import sys

import pytest

HEAVY = ("scipy.signal", "faiss", "transformers", "matplotlib", "resemblyzer", "ctranslate2")
#: The web server's modules, which only `segue serve` itself loads.
SERVER = ("starlette", "uvicorn", "python_multipart", "segue.serve")


@pytest.mark.parametrize("command", ["continue", "serve"])
def test_the_cli_imports_no_heavy_optional_module_to_parse_a_command(command):
    code = (
        "import sys\n"
        "from segue.cli import main\n"
        "try:\n"
        f"    main([{command!r}, '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print([m for m in {HEAVY + SERVER!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-500:]


def test_a_command_imports_only_its_own_module():
    """`segue continue` parses without the recipes, trainers and evaluation (start-up time); its
    --help does not even load torch. `segue --help` still lists every command."""
    code = (
        "import sys; from segue.cli import parse; "
        "parse(['continue', 'p.wav', '--seconds', '2', '-o', 'o.wav']); "
        "print(sorted(m for m in sys.modules if m.startswith(("
        "'segue.recipes', 'segue.eval', 'segue.codec.train', 'segue.lm.train', "
        "'segue.commands.codec', 'segue.commands.recipe'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    code = (
        "import sys\nfrom segue.cli import parse\ntry:\n    parse(['continue', '--help'])\n"
        "except SystemExit:\n    print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: segue continue" in done.stdout and done.stdout.split()[-1] == "False"
    listed = subprocess.run(
        [sys.executable, "-m", "segue.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert all(name in listed for name in ("recipe", "continue", "eval", "serve", "codec"))


def test_a_model_runs_on_tensors_without_the_audio_file_libraries():
    """soundfile and soxr are imported where a file is read or written, or audio resampled:
    the shipped bundle continues a tensor without them (e.g. on a GPU machine whose image lacks
    them, where carrying their wheels would push the working tree over the device tool's size
    limit; scripts/gpu/speed.sh)."""
    code = (
        "import sys; sys.modules['soundfile'] = None; sys.modules['soxr'] = None\n"
        "import torch; from segue.pipeline import AudioLM\n"
        "from segue import PACKAGED_BUNDLE\n"
        "model = AudioLM.from_pretrained(PACKAGED_BUNDLE)\n"
        "out = model.continue_(0.1 * torch.randn(16000), 0.2, seed=0, progress=False)\n"
        "print(tuple(out.shape))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.strip() == "(1, 19200)"
