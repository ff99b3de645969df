"""Text to ids and back: the tokenizer (`tokenizer`) and the chat templates it renders conversations with
(`chat`).
"""
