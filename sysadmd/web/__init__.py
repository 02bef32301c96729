"""Plain HTTP on the daemon's ports: REST calls, the health check and the dashboard."""
