# The demo arrives with the lifecycle engine.
demo:
	@echo "make demo: the lifecycle demo is not built yet (see the lifecycle issue)."
