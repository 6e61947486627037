"""Fakes shared by tests: a scripted model server for the real agent CLIs (model_server.py)."""
