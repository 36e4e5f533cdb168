"""docs/reproduction.md is runnable as written: every ``wholebody-train`` / ``wholebody-eval-ckpt`` command
of its code blocks composes (Hydra, in-process, nothing trained), a staged command passes the staged
runner's override check and builds each stage's config, and every row of its settings table composes to
the value the row states."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf

from wholebody.training.run import compose_config
from wholebody.training.staged import check_overrides, stage_config, stage_names

DOC = Path(__file__).resolve().parents[1] / "docs" / "reproduction.md"
COMMANDS = {"wholebody-train": "train", "wholebody-eval-ckpt": "eval"}
_ABSENT = object()


def doc_commands(text: str) -> list[tuple[str, list[str]]]:
    """(config name, overrides) of each wholebody-train / wholebody-eval-ckpt line of the fenced blocks,
    backslash continuations joined, comments dropped."""
    found = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            if tokens and tokens[0] in COMMANDS:
                found.append((COMMANDS[tokens[0]], tokens[1:]))
    return found


def settings_rows(text: str) -> list[tuple[str, object, list[str]]]:
    """(config key, stated value, overrides) of each row of the table under '## The settings'."""
    section = text.split("## The settings", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not all(re.fullmatch(r"`[^`]+`", c) for c in cells[2:]):
            continue
        key, value, overrides = (c[1:-1] for c in cells[2:])
        rows.append((key, yaml.safe_load(value), shlex.split(overrides)))
    return rows


def _compose(config: str, overrides: list[str], tmp: Path) -> DictConfig:
    own = [o if not o.startswith("data.root=") else f"data.root={tmp / 'coco'}" for o in overrides]
    return compose_config([*own, f"paths.output_dir={tmp / 'outputs'}"], config_name=config)


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_command_of_the_doc_composes(text, tmp_path):
    commands = doc_commands(text)
    assert {c for c, _ in commands} == {"train", "eval"}, "the doc lost its training or evaluation commands"
    assert len(commands) >= 10
    seen = set()
    for config, overrides in commands:
        if (config, tuple(overrides)) in seen:
            continue
        seen.add((config, tuple(overrides)))
        where = f"{'wholebody-train' if config == 'train' else 'wholebody-eval-ckpt'} {' '.join(overrides)}"
        try:
            cfg = _compose(config, overrides, tmp_path)
        except Exception as e:  # noqa: BLE001 - name the command that fails
            pytest.fail(f"does not compose: {where}\n{type(e).__name__}: {e}")
        if config == "eval":
            assert cfg.ckpt and cfg.ckpt != "???", where
        if cfg.get("staged"):  # what wholebody-train checks before running the stages
            check_overrides(cfg, overrides, set(HydraConfig.get().runtime.choices))
            for name in stage_names(cfg):
                stage = stage_config(cfg, name, resume=False)
                assert stage.trainer.max_epochs > 0, (where, name)


def test_every_setting_row_holds_the_stated_value(text, tmp_path):
    rows = settings_rows(text)
    assert len(rows) >= 30, "the settings table lost its rows (or its format)"
    configs: dict[tuple[str, ...], DictConfig] = {}
    for key, stated, overrides in rows:
        config = "eval" if any(o.startswith("ckpt=") for o in overrides) else "train"
        if tuple(overrides) not in configs:
            configs[tuple(overrides)] = _compose(config, overrides, tmp_path)
        node = OmegaConf.select(configs[tuple(overrides)], key, default=_ABSENT)
        assert node is not _ABSENT, f"{key}: no such key with {' '.join(overrides)}"
        value = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig | ListConfig) else node
        assert value == stated, f"{key} with {' '.join(overrides)}: the doc says {stated!r}, the config has {value!r}"

