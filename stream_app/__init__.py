"""hookstream's streaming side: the Faust app, the broker, and the command line."""
