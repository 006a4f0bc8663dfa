"""Several optimizers (generator + discriminator) with a discriminator warm-up."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segue.train import Phase
from tests.train.tiny import TinyGAN, tiny_config, train


def test_discriminator_waits_for_its_start_step(tmp_path):
    before = train(
        tiny_config("model.kind=gan", "model.disc_start=3", "optim.max_steps=6", "model.stop_at=2"),
        tmp_path / "a",
    )
    initial = TinyGAN(before.config.model)
    torch.manual_seed(before.train_cfg.seed)
    initial.setup(torch.device("cpu"))
    disc0 = initial.discriminator.state_dict()
    for key, value in before.raw_modules["discriminator"].state_dict().items():
        assert torch.equal(value, disc0[key]), key  # untouched for steps 0..2
    assert not before.optimizers["discriminator"].state  # and its optimizer never stepped
    gen = before.raw_modules["generator"].state_dict()
    assert any(not torch.equal(gen[k], v) for k, v in initial.generator.state_dict().items())

    after = train(
        tiny_config("model.kind=gan", "model.disc_start=3", "optim.max_steps=6"),
        tmp_path / "a",
        resume=True,
    )
    assert after.optimizers["discriminator"].state_dict()["state"][0]["step"] == 3  # steps 3..5
    assert any(
        not torch.equal(v, disc0[k])
        for k, v in after.raw_modules["discriminator"].state_dict().items()
    )
    # Its own settings: lr 5e-3 without warm-up, its cosine spanning steps 3..6.
    assert after.optim_cfgs["discriminator"].lr == 5e-3
    scheduler = after.schedulers["discriminator"]
    assert scheduler.last_epoch == 3 and scheduler.lr_lambdas[0].total_steps == 3
    assert after.optim_cfgs["generator"].lr == 1e-2


def test_phase_before_start_step_is_an_error(tmp_path, monkeypatch):
    def eager(self, models, batch, step):
        x, y = batch
        yield Phase("discriminator", models["discriminator"](torch.cat([x, y], 1)).mean())
        yield Phase("generator", (models["generator"](x) - y).abs().mean())

    monkeypatch.setattr(TinyGAN, "train_step", eager)
    with pytest.raises(ValueError, match=r"before its start_step 3.*optimizer_active"):
        train(tiny_config("model.kind=gan", "model.disc_start=3"), tmp_path)


def test_generator_gradients_do_not_leak_into_discriminator(tmp_path, monkeypatch):
    """G's adversarial loss reaches D's weights too; only D's own loss may update D."""

    def generator_first(self, models, batch, step):
        x, y = batch
        disc = models["discriminator"]
        fake = models["generator"](x)
        yield Phase("generator", F.softplus(-disc(torch.cat([x, fake], 1))).mean())
        real, fake = disc(torch.cat([x, y], 1)), disc(torch.cat([x, fake.detach()], 1))
        yield Phase("discriminator", F.softplus(-real).mean() + F.softplus(fake).mean())

    monkeypatch.setattr(TinyGAN, "train_step", generator_first)
    config = tiny_config(
        "model.kind=gan",
        "model.disc_start=0",
        "optim.max_steps=1",
        "optim.grad_clip=null",
        "optim.grad_accum=2",
        "train.batch_size=4",
    )
    trainer = train(config, tmp_path)

    reference = TinyGAN(config.model)
    torch.manual_seed(config.train.seed)
    reference.setup(torch.device("cpu"))
    disc, generator = reference.discriminator, reference.generator
    trainer.train_sampler.set_position(0, 0)
    for indices in list(trainer.train_sampler)[:2]:  # the step's two micro-batches
        x, y = trainer.task.collate([trainer.train_dataset[i] for i in indices])
        fake = generator(x).detach()
        real, fake = disc(torch.cat([x, y], 1)), disc(torch.cat([x, fake], 1))
        ((F.softplus(-real).mean() + F.softplus(fake).mean()) / 2).backward()
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in disc.parameters() if p.dim() >= 2], "weight_decay": 0.01},
            {"params": [p for p in disc.parameters() if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=5e-3,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    optimizer.step()
    trained = trainer.raw_modules["discriminator"].state_dict()
    for key, value in disc.state_dict().items():
        torch.testing.assert_close(trained[key], value, rtol=1e-6, atol=1e-7)
