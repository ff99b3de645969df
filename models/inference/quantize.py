"""Int8 weights for CPU serving: the linear layers of a loaded model swapped for torch's dynamically quantized ones.

Batch-1 decoding on a CPU is bound by the weight matmuls (82 % of a SmolLM2-135M decoding step is `aten::mm`), and
lmforge's and `transformers`' loops call the same float32 kernels, so no reordering of the loop makes float32 much
faster. Int8 weights read a quarter of the bytes and run fbgemm's VNNI kernels. torch's dynamic quantization keeps
one scale per output channel of the weight and quantizes each activation tensor on the fly, so there is no
calibration data to pick.

What it costs, measured on SmolLM2-135M-Instruct (`bench/serve.py --smollm2 --decode-only`): the MLP's down
projection reads activations with outlier channels, which one 8-bit scale per tensor flattens (quantizing it took
held-out bits per byte from 1.06 to 1.46), so the MLP's narrowing layer (its way back to the residual width)
stays float32; every other linear layer, the head included, is int8. Embeddings and norms stay float32.
Because an activation's scale is taken over the whole batch, an int8 answer can differ slightly with the requests
batched beside it (float32 answers do not).

The API lives in `torch.ao.quantization`, which torch marks deprecated in favour of `torchao`; torchao 0.18's int8
configs measured 0.4-0.7x float32 here on CPU in eager mode (they need `torch.compile` to pay), so the fbgemm path
is the one that serves a CPU today. Serving only: a quantized model is not trained, saved or exported.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from torch import nn

Quantize = Literal["none", "int8"]  # ServeConfig.quantize, ChatEngine.from_checkpoint


def int8_layers(model: nn.Module) -> list[str]:
    """The names of the linear layers `quantize_linear_int8` quantizes: all but the MLPs' narrowing projections."""
    from torch import nn

    def mlp_down(name: str, m: nn.Linear) -> bool:
        return ".mlp." in f".{name}." and m.in_features > m.out_features

    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and not mlp_down(name, m)]


def quantize_linear_int8(model: nn.Module) -> nn.Module:
    """`model` (float32, on CPU, in eval mode) with its `int8_layers` replaced by dynamic-int8 ones, in place.

    A head tied to the input embedding is untied first: the embedding keeps its float32 table for look-ups while the
    head's copy is quantized (the look-up reads one row per token, the head all of them)."""
    import torch  # here, not at the top: `Quantize` is imported by configs that must load without torch
    from torch import nn
    from torch.ao.quantization import per_channel_dynamic_qconfig

    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 quantization is a CPU serving path; on a GPU serve in bfloat16 (--device auto)")
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module.weight) in embeddings:
            module.weight = nn.Parameter(module.weight.detach().clone())
    spec = dict.fromkeys(int8_layers(model), per_channel_dynamic_qconfig)
    with warnings.catch_warnings():  # the deprecation notices of torch.ao (see the module docstring)
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(model.eval(), spec, dtype=torch.qint8, inplace=True)
