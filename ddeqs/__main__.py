from ddeqs.cli import main

raise SystemExit(main())
