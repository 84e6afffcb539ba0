from mlopsfile.cli import main

main()
