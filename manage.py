#!/usr/bin/env python
"""Django's command-line utility for administrative tasks (installed as the `relayadmin` command)."""

from relayadmin.commandline import main

if __name__ == "__main__":
    main()
