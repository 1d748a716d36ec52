"""What the tools share and no client calls: argument checks and their wording (`arguments`,
`wording`, `unicode`), the checked tool wrapper and error answers (`checked`, `errors`), answer
shapes (`results`, `compact`, `json_value`, `timestamps`, `query_views`). Each module directly
under ``tools/`` is one MCP tool, named as the tool, besides `resources` (the MCP resources) and
`schemas` (writes ``schemas/``)."""
