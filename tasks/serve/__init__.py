"""Serve: an OpenAI-compatible chat API over a registered model, and the terminal chat.

Entry points: `serve.py` — `serve(cfg)` runs the server, `build_app(engine, cfg)` the ASGI app, `load_engine(cfg)`
resolves the model; `chat.py` — `chat_repl(engine)` is `lmforge chat`. Config: `config.ServeConfig`. Internal
modules: `schema` (request parsing and validation), `scheduler` (the generation worker and its bounded queue),
`stream_filter` (the streaming output filter). Generation itself is `models.inference.generate.ChatEngine`.
"""
