"""One module per subcommand. Each defines `register(subparsers)` which adds its parser and sets
`handler=run`; `run(args) -> int` returns the exit code. Heavy imports happen inside `run`."""
