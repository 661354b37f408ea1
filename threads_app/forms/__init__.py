"""Forms, one module per area, mirroring `services/` and `views/`."""
