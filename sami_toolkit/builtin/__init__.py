"""Built-in plugins. Each module is an ordinary pluggy plugin, listed in ``sami_toolkit.plugins.loading.BUILTIN_PLUGINS``."""
