"""Reliability suite: sage-stream under kills, overlap, agent faults, disk and git faults,
bad input, hostile tickets and load. See RELIABILITY.md for the figures and commands."""
