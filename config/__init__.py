"""The example village and the starter roster (TOML files), installed as the package alertd.examples.

`alertd demo` runs the village (alertd.toml + roster.toml); `alertd init` writes alertd.toml and
roster.starter.toml (as roster.toml) to start a deployment from. Read them with importlib.resources.
"""
