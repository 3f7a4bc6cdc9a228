from redisfixture import bus_settings, redis

__all__ = ["bus_settings", "redis"]
