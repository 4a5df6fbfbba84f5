"""The CPU models: the tiny Qwen3 the smoke preset loads (shipped in tiny-qwen3/, made by tiny_model.py)
and SmolLM2-135M-Instruct for --preset=smollm2 (converted by smollm2.py from a wheel's GGUF)."""
