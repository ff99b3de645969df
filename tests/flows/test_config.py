from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.cli import main
from flows.config import PipelineConfig, parse_override
from flows.presets import load_config


def test_override_parses_dotted_key_and_yaml_value():
    assert parse_override("train.max_steps=200") == {"train": {"max_steps": 200}}
    assert parse_override("curate.languages=[en, de]") == {"curate": {"languages": ["en", "de"]}}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_override("train.max_steps")


def test_preset_then_file_then_overrides(tmp_path: Path):
    config_file = tmp_path / "my.yaml"
    config_file.write_text("train:\n  max_steps: 7\ntokenize:\n  vocab_size: 1024\n")
    cfg = load_config("tiny_cpu", config_file, ["train.max_steps=11"])
    assert cfg.name == "tiny_cpu"
    assert cfg.train.max_steps == 11  # --set wins over the file
    assert cfg.tokenize.vocab_size == 1024  # the file wins over the preset


def test_unknown_keys_are_errors(tmp_path: Path):
    with pytest.raises(ValidationError, match="no_such_field"):
        load_config("tiny_cpu", None, ["train.no_such_field=1"])
    with pytest.raises(KeyError, match="unknown preset"):
        load_config("huge_tpu")


def test_config_is_a_json_schema_for_the_prefect_form():
    schema = PipelineConfig.model_json_schema()
    assert {"crawl", "curate", "shard", "tokenize", "train", "evaluate", "registry", "tracking"} <= set(schema["properties"])


def test_cli_prints_resolved_config_and_rejects_bad_input(capsys):
    assert main(["config", "--set", "train.max_steps=3"]) == 0
    assert "max_steps: 3" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["config", "--set", "train.max_steps=not-a-number"])
    assert exit_info.value.code == 2
    assert "invalid config" in capsys.readouterr().err


def test_dict_valued_fields_are_replaced_not_merged():
    cfg = load_config("tiny_cpu", None, ["crawl.local_site.roots={site: /srv/html}"])
    assert cfg.crawl.local_site.roots == {"site": "/srv/html"}
    assert cfg.crawl.local_site.port == load_config("tiny_cpu").crawl.local_site.port  # sibling fields kept


def test_every_preset_validates_and_round_trips_through_its_dump():
    """A preset is what `make demo` and the Prefect form start from: each must validate as written (smol_cpu's LoRA
    gets its init_from from `base` only at run time) and survive the JSON round trip the form and MLflow params use."""
    from flows import presets
    from flows.config import PipelineConfig

    for make in presets.PRESETS.values():
        cfg = make()
        assert PipelineConfig.model_validate(cfg.model_dump(mode="json")) == cfg
