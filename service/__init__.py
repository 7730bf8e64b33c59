"""Running AMOS as a service: wiring, health and metrics endpoints, leader election, logging."""
