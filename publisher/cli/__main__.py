"""``python -m publisher.cli`` runs the faaspub CLI."""

from publisher.cli.main import main

main()
