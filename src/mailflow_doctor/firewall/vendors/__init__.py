"""One module per firewall vendor; importing a module registers its parser."""
