"""The `lmforge` command line itself: `serve` takes every `ServeConfig` field as a flag (generated from the model),
a value the config rejects ends the command naming the field, and the Prefect home follows the one `LMFORGE_HOME`
resolution."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Literal

import httpx
import pytest
from lm_fixtures import tiny_gpt, tiny_tokenizer, write_checkpoint
from pydantic import BaseModel, Field
from serve_fixtures import free_port, start_server

from flows.cli import main
from flows.cli.bootstrap import embedded_environment
from flows.cli.model_flags import add_model_flags, model_from_flags
from flows.cli.parser import build_parser
from tasks.core.artifacts import lmforge_home
from tasks.serve.config import ServeConfig


def unset(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Remove `names` from the environment for one test; what `embedded_environment` sets in their place goes too."""
    for name in names:
        monkeypatch.setenv(name, "")  # recorded first, so the teardown restores (or removes) it
        monkeypatch.delenv(name)


def flags_of(command: str) -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {action.dest: action for action in sub._actions}


def test_serve_has_a_flag_for_every_serve_config_field_with_its_description():
    flags = flags_of("serve")
    for name, field in ServeConfig.model_fields.items():
        assert name in flags, name
        assert field.description in flags[name].help
    assert flags["model_uri"].option_strings == ["--model"]  # the flag every model command names its model by
    assert flags["output_filter"].choices == ["pii", "none"] and flags["quantize"].choices == ["none", "int8"]


def test_serve_flags_build_the_serve_config():
    args = build_parser().parse_args(["serve", "--max-tokens-limit", "64", "--output-filter", "none",
                                      "--max-request-bytes", "2048", "--port", "9001", "--model", "/ckpt"])
    cfg = model_from_flags(ServeConfig, args)
    assert cfg == ServeConfig(max_tokens_limit=64, output_filter="none", max_request_bytes=2048, port=9001,
                              model_uri="/ckpt")
    assert model_from_flags(ServeConfig, build_parser().parse_args(["serve"])) == ServeConfig()  # defaults kept
    chat = model_from_flags(ServeConfig, build_parser().parse_args(["chat", "--quantize", "int8"]))
    assert chat == ServeConfig(quantize="int8")


def test_a_value_the_config_rejects_names_the_field_and_exits_2(lmforge_home: Path, capsys, monkeypatch):
    unset(monkeypatch, "PREFECT_HOME")
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--max-request-bytes", "10", "--port", str(free_port())])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid config" in err and "max_request_bytes" in err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--output-filter", "everything"])  # not a choice: argparse says so


class Toy(BaseModel):
    on: bool = Field(default=False, description="A switch.")
    ratio: float = Field(default=0.5, description="A number.")
    mode: Literal[1, 2] = Field(default=1, description="A choice of ints.")
    names: list[str] = Field(default_factory=list, description="No command-line form.")


def test_flags_follow_field_types_and_refuse_fields_without_a_command_line_form():
    parser = argparse.ArgumentParser()
    add_model_flags(parser, Toy, ["on", "ratio", "mode"])
    assert model_from_flags(Toy, parser.parse_args(["--on", "--ratio", "2", "--mode", "2"])) == Toy(on=True, ratio=2,
                                                                                                     mode=2)
    assert model_from_flags(Toy, parser.parse_args(["--no-on"])) == Toy()
    with pytest.raises(TypeError, match="Toy.names"):
        add_model_flags(argparse.ArgumentParser(), Toy)


def test_the_prefect_home_lives_under_the_one_lmforge_home_resolution(tmp_path: Path, monkeypatch):
    unset(monkeypatch, "LMFORGE_HOME", "PREFECT_HOME", "PREFECT_API_URL")
    monkeypatch.chdir(tmp_path)
    embedded_environment()
    assert lmforge_home() == tmp_path / ".lmforge"  # the default, relative to the working directory
    assert os.environ["LMFORGE_HOME"] == str(tmp_path / ".lmforge")
    assert os.environ["PREFECT_HOME"] == str(tmp_path / ".lmforge" / "prefect")
    assert (tmp_path / ".lmforge" / "prefect").is_dir()


@pytest.mark.slow
def test_lmforge_serve_enforces_the_limits_its_flags_set(tmp_path: Path):
    tok = tiny_tokenizer()
    checkpoint = write_checkpoint(tmp_path / "train", tiny_gpt(tok.vocab_size, seq_len=256), tok)
    port = free_port()
    lmforge = str(Path(sys.executable).parent / "lmforge")
    args = [lmforge, "serve", "--model", str(checkpoint), "--port", str(port), "--device", "cpu",
            "--max-tokens-limit", "8", "--max-request-bytes", "2048", "--max-messages", "2"]
    ask = {"messages": [{"role": "user", "content": "Hi"}]}
    with start_server(args, port, tmp_path / "serve.log") as url:
        chat = f"{url}/v1/chat/completions"
        assert httpx.post(chat, json={**ask, "max_tokens": 8}, timeout=60).status_code == 200
        too_many = httpx.post(chat, json={**ask, "max_tokens": 9}, timeout=60)
        assert too_many.status_code == 400 and "exceeds the limit 8" in too_many.json()["error"]["message"]
        big = {"messages": [{"role": "user", "content": "x" * 4000}], "max_tokens": 4}
        assert httpx.post(chat, json=big, timeout=60).status_code == 413
        three = {"messages": [{"role": "user", "content": "a"}] * 3, "max_tokens": 4}
        assert httpx.post(chat, json=three, timeout=60).status_code == 400
