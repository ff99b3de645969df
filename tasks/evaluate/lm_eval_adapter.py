"""lm-evaluation-harness adapter: our checkpoints as the lm-eval model class `lmforge`.

Importing this module registers the class, so any lm-eval task whose data is local runs on an lmforge model:

    python -m tasks.evaluate.lm_eval_adapter --model lmforge --model_args
    checkpoint=.lmforge/runs/train/<hash>/step_000200 \
        --tasks my_task --include_path my_tasks/

(the arguments are lm-eval's own CLI). `checkpoint=` is a checkpoint directory; `model_uri=models:/lmforge@champion`
loads a registered version instead. Scoring reuses the evaluate stage's code, so lm-eval and `tasks.evaluate.evaluate`
agree: `loglikelihood` is `downstream.continuation_scores`, `loglikelihood_rolling` is `evaluate.score_stream`
over `<|bos|>` + the text (every token scored once, windows of the model's context), and `generate_until` samples
plain-text continuations (greedy unless `temperature` > 0) cut at the first `until` string.
Needs the optional package `lm_eval` (`pip install lm_eval`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from models.hardware.devices import resolve_device
from tasks.evaluate import downstream
from tasks.evaluate.metrics import context_length, score_stream


@register_model("lmforge")
class LmforgeLM(LM):
    def __init__(
        self, checkpoint: str | None = None, model_uri: str | None = None, device: str = "auto", batch_size: int | str = 8,
        max_gen_toks: int = 128, **_: Any,
    ) -> None:
        super().__init__()
        self._device = str(resolve_device(device))
        if checkpoint:
            from models.weights.checkpoint import load_model

            self.model, self.tokenizer, _ = load_model(checkpoint, device=self._device)
        elif model_uri:
            import mlflow

            engine = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().engine
            self.model, self.tokenizer = engine.model.to(self._device), engine.tokenizer
        else:
            raise ValueError("lmforge model needs model_args checkpoint=<checkpoint dir> or model_uri=models:/…")
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 8
        self.max_gen_toks = int(max_gen_toks)
        self.seq_len = context_length(self.model)

    @classmethod
    def from_objects(cls, model: Any, tokenizer: Any, device: str = "cpu", batch_size: int = 8) -> LmforgeLM:
        """Wrap an already loaded model (tests, notebooks)."""
        self = cls.__new__(cls)
        LM.__init__(self)
        self.model, self.tokenizer, self._device = model, tokenizer, device
        self.batch_size, self.max_gen_toks, self.seq_len = batch_size, 128, context_length(model)
        return self

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        pairs = [tuple(r.args[:2]) for r in requests]
        return downstream.continuation_scores(self.model, self.tokenizer, pairs, self.seq_len, self._device, self.batch_size)

    def loglikelihood_rolling(self, requests) -> list[float]:
        out = []
        for request in requests:
            stream = np.array([self.tokenizer.bos_id, *self.tokenizer.encode(request.args[0])], dtype=np.int64)
            nats, _ = score_stream(self.model, stream, self.tokenizer.bos_id, self.seq_len, self.batch_size, self._device)
            out.append(-nats)
        return out

    def generate_until(self, requests) -> list[str]:
        import torch

        out = []
        for request in requests:
            context, kwargs = request.args[0], dict(request.args[1] if len(request.args) > 1 else {})
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            temperature = float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample", True) else 0.0
            ids = [self.tokenizer.bos_id, *self.tokenizer.encode(context)][-(self.seq_len - 1) :]
            idx = torch.tensor([ids], dtype=torch.long, device=self._device)
            n_new = int(kwargs.get("max_gen_toks", self.max_gen_toks))
            full = self.model.generate(idx, n_new, temperature=temperature, eos_id=self.tokenizer.eos_id)
            text = self.tokenizer.decode(full[0, idx.size(1) :].tolist(), skip_special_tokens=True)
            cuts = [text.find(stop) for stop in until if stop and stop in text]
            out.append(text[: min(cuts)] if cuts else text)
        return out


if __name__ == "__main__":
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()
