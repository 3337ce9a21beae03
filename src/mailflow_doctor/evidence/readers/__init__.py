"""Every evidence reader, one module each; importing a module registers its readers."""
