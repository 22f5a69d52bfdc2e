"""The shutdown core: signal names and dispositions, the guard, the shutdown state, the registry."""
