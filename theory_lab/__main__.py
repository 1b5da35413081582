from theory_lab.cli import main

raise SystemExit(main())
