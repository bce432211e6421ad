"""The outside world's door: FastAPI app, model store, CLI, scheduler."""
