from livedata.cli import main

main()
