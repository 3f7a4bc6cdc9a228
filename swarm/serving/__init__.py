"""Serving the base model and its adapters: packaged bases, vLLM as a child process, the
model client, prompts, and the price of tokens.
"""
