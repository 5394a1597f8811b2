from vaultkey._cli import main

raise SystemExit(main())
