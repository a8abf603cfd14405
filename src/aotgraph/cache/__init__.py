"""Finding the compiled entry for a call: keys (`keys`), the entries of one function
(`entries`), guards on the Python values a program read (`guards`), why a call compiled
again (`recompiles`), and the per-call fast path (`fast_path`)."""
