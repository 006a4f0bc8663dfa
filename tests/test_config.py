from dataclasses import dataclass, field

import pytest

from segue.config import (
    UMASK,
    ConfigError,
    apply_overrides,
    from_dict,
    load_config,
    save_config,
    to_dict,
    write_atomic,
)


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    warmup: int = 100


@dataclass
class Run:
    name: str = "run"
    optim: Optim = field(default_factory=Optim)
    layers: list[int] = field(default_factory=lambda: [1, 2])
    ema: float | None = None
    bf16: bool = False


def test_round_trip_through_json(tmp_path):
    cfg = Run(name="x", optim=Optim(lr=3e-4, betas=(0.8, 0.99)), ema=0.999)
    save_config(cfg, tmp_path / "config.json")
    assert load_config(Run, tmp_path / "config.json") == cfg
    assert from_dict(Run, to_dict(cfg)) == cfg


def test_overrides_are_typed():
    cfg = apply_overrides(
        Run(), ["optim.lr=3e-4", "optim.warmup=5", "ema=0.99", "bf16=true", "name=123",
                "layers=[4,5]", "optim.betas=[0.5,0.6]"]
    )
    assert cfg.optim.lr == 3e-4 and cfg.optim.warmup == 5 and cfg.ema == 0.99 and cfg.bf16
    assert cfg.name == "123" and cfg.layers == [4, 5] and cfg.optim.betas == (0.5, 0.6)
    assert apply_overrides(cfg, ["ema=null"]).ema is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr", "key=value"),
        ("optim.nope=1", "no field 'nope'"),
        ("lr.x=1", "not a section"),
        ("optim.warmup=1.5", "integer"),
        ("bf16=3", "true/false"),
        ("optim.lr=fast", "number"),
    ],
)
def test_bad_overrides_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Run(), [override])


def test_unknown_keys_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown field"):
        from_dict(Run, {"nmae": "typo"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(Run, tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="not found"):
        load_config(Run, tmp_path / "missing.json")
    (tmp_path / "c.toml").write_text('name = "t"\n[optim]\nlr = 0.5\n')
    assert load_config(Run, tmp_path / "c.toml").optim.lr == 0.5


def test_atomic_writes_get_the_users_default_permissions(tmp_path):
    """Not the 0600 of the temporary file they start as (manifests, configs, markers)."""
    write_atomic(tmp_path / "a.json", b"{}")
    save_config(Run(), tmp_path / "config.json")
    for name in ("a.json", "config.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~UMASK
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
