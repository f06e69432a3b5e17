from kompose_py.cli import main

raise SystemExit(main())
