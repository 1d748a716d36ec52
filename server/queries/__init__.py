"""The work agents run, seen and steered: `registry.QueryRegistry` (start, control, list, wait),
`rules` (adaptive rules from the settings), `commands` (execute_command's argv runner)."""
