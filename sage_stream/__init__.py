"""sage-stream: drain a Sage ticket backlog with AI coding agents in parallel git worktrees."""

import os

__version__ = "0.1.0"

# pydantic looks for plugins (observability hooks) in the entry points of every installed
# package the first time a model is built: 20-40 ms of every `sage` start, for nothing:
# our models are internal. A value the user set is kept. Agents, checks and git never
# see it: they get allow-listed environments (agents/environment.py, git.py).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
