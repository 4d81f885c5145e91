from attntrain.cli import main

main()
