"""pytest puts this directory on sys.path, so test files import the shared helpers
(`parity`: differential checks against eager) by their module names."""
