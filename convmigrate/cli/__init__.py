"""The command-line interface: parse, call the library, render. Typer and rich live only here."""
