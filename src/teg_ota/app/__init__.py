"""The application layer: settings, the dependency-injector container (the only module
that names concrete adapters), the runner, the CLI and the library facade."""
