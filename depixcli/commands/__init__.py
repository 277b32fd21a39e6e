"""One module per `depix` sub-command. Each imports only click and the standard library at the top."""
