from sharpedges.cli import main

raise SystemExit(main())
