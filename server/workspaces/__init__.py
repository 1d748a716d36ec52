"""Agents' workspaces: git worktrees of the user's repository, one branch per agent."""
