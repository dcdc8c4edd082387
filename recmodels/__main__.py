from recmodels.cli import main

main()
