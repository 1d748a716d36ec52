"""The HTTP side: the bearer and body guards, the agents' memory endpoint, and the dashboard."""
