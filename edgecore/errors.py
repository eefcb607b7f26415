"""The exception base: every package's error type derives from it and says
which exit code its CLI returns, so one wrapper (`edgecore.cli.run_main`) maps
errors to exit codes for every tool."""


class EdgeError(Exception):
    """Bad input or environment, with a message that names what was expected and
    what was found. CLIs print the message on one line and exit with `exit_code`."""

    exit_code = 2
    label = "error"  # the word before the message: "<tool>: error: <message>"
