from nodeswap.cli import main

main()
