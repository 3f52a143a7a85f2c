"""The control loop (:mod:`.loop`), its ports to the cluster (:mod:`.ports`) and the runner that
schedules ticks, handles signals and hot-reloads policies (:mod:`.runner`)."""
