"""Device profiles shipped with alertd (TOML files), installed as the package alertd.devices."""
