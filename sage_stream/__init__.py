"""sage-stream: drain a Sage ticket backlog with AI coding agents in parallel git worktrees."""

__version__ = "0.1.0"
