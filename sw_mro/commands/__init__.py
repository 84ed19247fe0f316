"""CLI sub-commands of ``sw-mro``: each module has add_arguments(parser) and run(args)."""
