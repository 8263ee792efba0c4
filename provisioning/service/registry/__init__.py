"""Device registry and admin API: devices and operators as OAuth clients, audit log."""
