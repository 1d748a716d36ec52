"""The work agents run, seen and steered: `registry.QueryRegistry` (start, control, list, wait),
`book.QueryBook` (every query recorded, the active ones in memory; the agents' `TaskLedger`),
`records` (their rows and logs), `rules` (adaptive rules from the settings), `commands`
(execute_command's argv runner)."""
