"""`python -m convmigrate` runs the command-line tool."""

from convmigrate.cli.app import main

main()
