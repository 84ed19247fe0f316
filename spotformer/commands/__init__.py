"""CLI sub-commands of ``spotformer``: each module has add_arguments(parser) and run(args)."""
