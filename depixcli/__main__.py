from depixcli.cli import main

main()
