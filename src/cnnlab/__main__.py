from cnnlab.launch import main

raise SystemExit(main())
