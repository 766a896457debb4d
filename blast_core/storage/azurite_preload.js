// Preloaded into Azurite by azurite.py (NODE_OPTIONS=--require). The first SIGTERM or
// SIGINT reaches Azurite's own handler, which saves its data and exits; a repeated one does
// nothing rather than kill it halfway (the kernel may send the parent-death signal several
// times: once each time a dying parent's threads hand Azurite on to one another). If saving
// hangs, Azurite exits anyway 10 s after the first, so that none is ever left running.
let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    if (!stopping) {
      stopping = true;
      setTimeout(() => process.exit(1), 10000).unref();
    }
  });
}
