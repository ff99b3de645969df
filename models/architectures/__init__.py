"""What a model computes: the architecture registry (`registry`: `ModelConfig`, `build_model`),
the architectures (`gpt`, the Llama-style transformer; `gpt2`; `rnn`; `gcnn`) and the output head's chunked
cross-entropy they share (`loss`). Pure torch; nothing here knows how a model is trained, stored or served.
"""
