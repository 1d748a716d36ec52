"""The live dashboard: pages and controls over HTTP for a person watching a swarm.

`app.dashboard_routes` serves it (beside ``/mcp`` in ``switchboard serve --transport http``, or
alone in ``switchboard dashboard``); `sessions` signs a browser in; `state` gathers what the
page shows; the page itself (``static/``) is plain HTML, CSS and JavaScript, nothing fetched
at run time and no build step.
"""
